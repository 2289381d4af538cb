package optimizer

import (
	"math"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// lossPrior is how many probes' worth of weight a backbone's loss over
// all its prefixes carries in each prefix's loss.
const lossPrior = 20

// pairLoss is a prefix's loss on b, its own probes weighed with lossPrior
// probes at b's loss over all prefixes. A pair has a few probes in the
// window (16 at 250 ms); at 5 % loss, 44 % of such windows hold none, and
// at the loss penalty that flipped prefixes on and off a browning-out
// backbone every hold-down (72 moves in 25 s of the brownout scenario).
// Path loss is mostly the backbone's; a prefix's own loss still shows once
// its probes outnumber the prior. After a fall in the backbone's loss (see
// recentLoss) the window is the past: its recent loss stands for every
// prefix.
func (o *Optimizer) pairLoss(st probes.Stats, b fib.BackboneID) float64 {
	bb := &o.bb[b]
	if bb.lossShifted {
		return bb.loss
	}
	lost := st.Lost
	if lost < pairLossMin {
		lost = 0
	}
	if bb.probes < lossPrior {
		if st.Sent == 0 {
			return st.Loss
		}
		return float64(lost) / float64(st.Sent)
	}
	return (float64(lost) + lossPrior*bb.loss) / (float64(st.Sent) + lossPrior)
}

// pairLossMin is the fewest of a prefix's own lost probes that count as its
// loss; fewer leave it the backbone's. One lost probe is an accident (a
// reply late past the timeout when the box or a router stalls), and at the
// loss penalty it outweighs any RTT difference for a prefix in turn, which
// has 2 to 4 probes per backbone in the scale lab. A dead or lossy path
// loses more than one soon enough, and the backbone's loss still counts
// from the first.
const pairLossMin = 2

// backboneLoss notes every backbone's loss over all its prefixes: the
// window's, or its last rounds' when their loss is clearly lower.
func (o *Optimizer) backboneLoss(snap *probes.Snapshot, last, prev map[fib.BackboneID]Round) {
	for i := range o.bb {
		id := fib.BackboneID(i)
		bs := snap.Backbones[id]
		b := &o.bb[i]
		b.loss, b.probes, b.lossShifted, b.lossSent = bs.Loss, bs.ProbesSent, false, bs.LastLossSent
		if l, ok := recentLoss(bs, last[id], prev[id]); ok {
			b.loss, b.lossShifted = l, true
		}
	}
	// Loss up to the least lossy backbone's is every path's (the box, the
	// customer's side, chance) and tells no backbone from another; a few
	// tenths of a point more is background too.
	floor := 1.0
	for i := range o.bb {
		if o.bb[i].probes > 0 {
			floor = min(floor, o.bb[i].loss)
		}
	}
	for i := range o.bb {
		if b := &o.bb[i]; b.probes > 0 {
			b.loss = max(0, b.loss-floor-lossTolerance)
		}
	}
}

// lossTolerance is how much more than the least lossy backbone a backbone
// may lose before its loss counts, at the loss penalty, in its prefixes'
// scores. At 100 ms per point, chance differences of a tenth of a point
// outweighed most RTT differences: in the scale lab, where this VM's
// stalls lose 0.1-0.3 % of every backbone's probes, they moved 1,500 to
// 3,000 prefixes a minute, most of them back within seconds. Half a point
// costs a TCP flow little; a brownout (2-5 %) still counts, less this.
const lossTolerance = 0.005

// lossShiftP is how unlikely, were the window's loss still the path's, its
// last rounds' loss must be for the optimizer to believe the path changed.
// It is tested every round: at 0.01, a backbone losing 5 % all along would
// pass about once in its 100 rounds of the brownout lab (25 s) and pull
// every prefix back onto it for a hold-down.
const lossShiftP = 0.001

// recentLoss is the loss of a backbone's last round, or of its last two,
// when it is so far below the window's that chance explains it less than
// lossShiftP of the time: a backbone that stopped losing. The window keeps
// its losses for up to its length after that (a prefix waited 2 s to
// return to a backbone recovered from 5 % loss, at 500 ms of penalty for
// every lost percent point), and the next round shows the change within
// a round's time. One round is evidence enough after a blackout; after
// 5 % loss, 135 answered probes in a row are (0.95^135 < 0.001), which
// the prober's repeats on an unsettled backbone give in a round where its
// rate has room (probes.unsettledRepeat). Only a fall
// is taken early: a rise shows in the window fast enough, each lost probe
// weighing at once.
func recentLoss(bs probes.BackboneStats, last, prev Round) (float64, bool) {
	if bs.ProbesSent < lossPrior || bs.Loss == 0 {
		return 0, false
	}
	for _, r := range []Round{last, {Sent: last.Sent + prev.Sent, Lost: last.Lost + prev.Lost}} {
		if r.Sent > 0 && binomialCDF(r.Lost, r.Sent, bs.Loss) < lossShiftP {
			return float64(r.Lost) / float64(r.Sent), true
		}
	}
	return 0, false
}

// binomialCDF is the chance of at most k losses in n probes at loss p. It
// is 1 when k/n is not below p (no fall to test), so it is only summed
// over the few terms a fall leaves.
func binomialCDF(k, n uint64, p float64) float64 {
	switch {
	case p >= 1 && k < n:
		return 0 // a dead backbone answered
	case float64(k) >= p*float64(n):
		return 1
	}
	// Term i is C(n,i) p^i (1-p)^(n-i), from term 0 = (1-p)^n up.
	term := math.Exp(float64(n) * math.Log1p(-p))
	sum := term
	for i := uint64(0); i < k; i++ {
		term *= float64(n-i) / float64(i+1) * p / (1 - p)
		sum += term
	}
	return sum
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
)

// TestCheckWithMRTPeers maps two peers of a real RouteViews dump to two
// backbones, one by AS and one by address, and checks that both backbones
// get that peer's table and that lookups see them.
func TestCheckWithMRTPeers(t *testing.T) {
	dump := shareddata.File(t, shareddata.MRTv4)
	fh, err := os.Open(dump)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := routes.MRTPeers(fh, dump)
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	perAS := map[uint32]int{}
	for _, p := range peers {
		perAS[p.AS]++
	}
	var byAS, byAddr *routes.MRTPeer
	for i := range peers {
		p := &peers[i]
		if p.AS == 0 {
			continue
		}
		if perAS[p.AS] == 1 && byAS == nil {
			byAS = p
		} else if byAS != nil && p.AS != byAS.AS && p.Address.Is4() {
			byAddr = p
			break
		}
	}
	if byAS == nil || byAddr == nil {
		t.Fatalf("no suitable peers among %v", peers)
	}
	cfg := fmt.Sprintf(`
[[backbone]]
name = "by-as"
interface = "pnap-bb0"
gateway_v4 = "198.18.100.1"
  [[backbone.mrt]]
  path = %q
  peer_as = %d

[[backbone]]
name = "by-addr"
interface = "pnap-bb1"
gateway_v4 = "198.18.101.1"
  [[backbone.mrt]]
  path = %q
  peer_address = %q
`, dump, byAS.AS, dump, byAddr.Address)
	path := filepath.Join(t.TempDir(), "mrt.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "", "check", "-c", path)
	if code != 0 {
		t.Fatalf("check: exit %d: %s", code, errs)
	}
	for _, name := range []string{"by-as", "by-addr"} {
		var n int
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 5 && f[1] == name && f[4] == "held" {
				fmt.Sscan(f[2], &n)
			}
		}
		if n < 1000 {
			t.Fatalf("backbone %s holds %d routes from its MRT peer, want > 1000:\n%s", name, n, out)
		}
	}
	code, out, errs = runCmd(t, "1.1.1.1\n", "fib", "lookup", "-c", path, "--backbone")
	if code != 0 || !strings.HasPrefix(out, "1.1.1.1 1.1.1.0/24 by-") {
		t.Fatalf("lookup: exit %d, output %q, stderr %q", code, out, errs)
	}
	// A peer that is not in the dump is an error naming the peers.
	bad := strings.Replace(cfg, fmt.Sprintf("peer_as = %d", byAS.AS), "peer_as = 4294967000", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runCmd(t, "", "check", "-c", path)
	if code != 1 || !strings.Contains(errs, "4294967000") || !strings.Contains(errs, fmt.Sprint(byAddr.AS)) {
		t.Fatalf("unknown peer: exit %d, stderr %q", code, errs)
	}
}

#!/bin/sh
# The pnapd user and /etc/pnapd's ownership, then the unit; pnapd is not
# started: its configuration must be written first.
set -e
if [ -d /run/systemd/system ]; then
	systemd-sysusers pnapd.conf || true
	systemd-tmpfiles --create pnapd.conf || true
	systemctl daemon-reload || true
fi

#!/bin/bash
# Boots one emulated EC2 instance of the AWS data plane (dataplane.py), inside
# the private mount and UTS namespaces `unshare` gave it:
#   - /etc and /var are overlays private to the instance (its user data
#     writes /etc/stackctl; its /etc/hosts has the VPC's DNS names) and its
#     hostname is the instance's private DNS name;
#   - the instance's Docker engine is a podman service of its own, whose
#     socket is /var/run/docker.sock in here, so `docker run -v
#     /var/run/docker.sock:...` hands containers this instance's engine;
#   - then the launch template's user data runs unchanged, with only the
#     operating-system layer stubbed (bin/: dnf, systemctl; docker is podman).
# boot.rc gets the user data's exit status; the instance lives as long as its
# podman service.
set -euo pipefail
dir="$INSTANCE_DIR"

mkdir -p "$dir/etc" "$dir/etc.work" "$dir/var" "$dir/var.work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$dir/etc,workdir=$dir/etc.work" /etc
cat "$dir/hosts" >> /etc/hosts
mount -t overlay overlay -o "lowerdir=/var,upperdir=$dir/var,workdir=$dir/var.work" /var
# /var/run is the host's /run; the instance gets its own (podman's state
# elsewhere in /run stays shared with the host's podman).
rm -f /var/run
mkdir -p /var/run
hostname "$(cat "$dir/hostname")"

socket="$dir/docker.sock"
# shellcheck disable=SC2086 # PODMAN_FLAGS is a list of flags
podman $PODMAN_FLAGS system service --time=0 "unix://$socket" > "$dir/podman.log" 2>&1 &
engine=$!
for _ in $(seq 200); do
  [[ -S $socket ]] && break
  kill -0 "$engine" 2>/dev/null || { echo "podman service exited" >&2; exit 1; }
  sleep 0.05
done
[[ -S $socket ]] || { echo "podman service made no socket" >&2; exit 1; }
# As the Docker package leaves it: root:docker 0660.
chgrp 992 "$socket"
chmod 0660 "$socket"
touch /var/run/docker.sock
mount --bind "$socket" /var/run/docker.sock

set +e
bash "$dir/user-data" > "$dir/boot.log" 2>&1
echo $? > "$dir/boot.rc"
set -e
wait "$engine"

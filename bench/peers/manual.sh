#!/usr/bin/env bash
# Seed 000 ("Certificates for Carbonio Mesh") as an administrator would script it: one OpenSSH command per runbook
# line, the leader first, then every other node one after the other.
#
#   manual.sh LAB_DIR SECRET_FILE LEADER FOLLOWER...
#
# LAB_DIR holds the lab's ssh_config (and through it known_hosts and the key). SECRET_FILE holds the new mesh secret.
# As in the runbook, the secret goes on `service-discover setup`'s command line: that is the procedure this script
# reproduces, not something regen does.
set -euo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $0 LAB_DIR SECRET_FILE LEADER [FOLLOWER...]" >&2
  exit 64
fi
DIR=$1
SECRET_FILE=$2
LEADER=$3
shift 3

on() {
  local node=$1
  shift
  ssh -F "$DIR/ssh_config" -o BatchMode=yes "$node" "$@"
}

SECRET=$(cat "$SECRET_FILE")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Preliminary tasks: the mesh servers, and which of them leads.
on "$LEADER" "su - zextras -c 'carbonio prov gas service-discover'"
LEADER_ADDR=$(on "$LEADER" "wget -qO - http://127.0.0.1:8500/v1/status/leader")
LEADER_IP=${LEADER_ADDR#\"}
LEADER_IP=${LEADER_IP%%:*}
if [ -z "$LEADER_IP" ]; then
  echo "the mesh has no leader (status/leader answered ${LEADER_ADDR:-nothing})" >&2
  exit 1
fi

# Retrieve the reset index: `consul acl bootstrap` fails on purpose and names it.
BOOTSTRAP=$(on "$LEADER" "consul acl bootstrap" 2>&1 || true)
INDEX=$(printf '%s\n' "$BOOTSTRAP" | sed -n 's/.*reset index: \([0-9][0-9]*\).*/\1/p' | head -n 1)
if [ -z "$INDEX" ]; then
  echo "no reset index in: $BOOTSTRAP" >&2
  exit 1
fi

# Step 1: wipe the old credentials on the leader.
on "$LEADER" "sudo -u service-discover bash -c \"echo $INDEX > /var/lib/service-discover/data/acl-bootstrap-reset\""
on "$LEADER" "systemctl stop service-discover"
on "$LEADER" "rm /etc/zextras/service-discover/config.json"
on "$LEADER" "rm /etc/zextras/service-discover/main.json"
on "$LEADER" "rm /var/lib/service-discover/*.pem"

# Step 2: new credentials.
on "$LEADER" "service-discover setup $LEADER_IP --first-instance --password=$SECRET"

# Multi-server tasks, node by node. The credentials travel through this host (nodes need not reach each other
# over ssh as root).
CREDS=/etc/zextras/service-discover/cluster-credentials.tar.gpg
if [ "$#" -gt 0 ]; then
  scp -F "$DIR/ssh_config" -o BatchMode=yes -q "$LEADER:$CREDS" "$WORK/cluster-credentials.tar.gpg"
fi
for NODE in "$@"; do
  scp -F "$DIR/ssh_config" -o BatchMode=yes -q "$WORK/cluster-credentials.tar.gpg" "$NODE:$CREDS"
  on "$NODE" "systemctl stop service-discover"
  on "$NODE" "rm /etc/zextras/service-discover/config.json"
  on "$NODE" "rm /etc/zextras/service-discover/main.json"
  on "$NODE" "rm /var/lib/service-discover/*.pem"
  # $(hostname -i) as the runbook says, unless it answers loopback (Debian's 127.0.1.1), which setup refuses.
  on "$NODE" 'ip=$(hostname -i | cut -d" " -f1); case "$ip" in 127.*|"") ip=$(ip -4 -o addr show scope global | awk "{print \$4}" | cut -d/ -f1 | head -n 1);; esac; service-discover setup "$ip" --password='"$SECRET"
done

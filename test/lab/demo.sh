#!/usr/bin/env bash
# The demo: bring up a simulated 5-node Carbonio Mesh (1 mesh server + 4 agents) on this machine, run
# `regen start` against it with live progress, then `regen status`. Needs root (network namespaces, sshd).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" != 0 ]; then
  echo "regen demo: run as root (the lab uses network namespaces and one sshd per node)" >&2
  exit 2
fi
need=()
for pkg in openssh-server openssh-client sudo iproute2 gnupg openssl jq wget tar procps util-linux; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "regen demo: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -d node_modules/xstate ] || npm ci --no-audit --no-fund
npm run build --silent

DIR=${REGEN_DEMO_DIR:-/tmp/regen-demo}
NODES=${REGEN_DEMO_NODES:-5}
node dist/test/lab/cli.js down --dir "$DIR" >/dev/null 2>&1 || true
echo "== bringing up a lab of $NODES nodes in $DIR"
node dist/test/lab/cli.js up --nodes "$NODES" --servers 1 --profile current --lose-password --dir "$DIR"

# The new mesh secret: a file only root can read (regen never stores it; the leader keeps it afterwards).
( umask 077; head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 > "$DIR/new-secret" )

echo
echo "== regen start"
node dist/cli/main.js start -i "$DIR/inventory.yaml" --ssh-config "$DIR/ssh_config" --known-hosts "$DIR/known_hosts" \
  --password-file "$DIR/new-secret" --db "$DIR/regen.db" --parallel 2 --yes
echo
echo "== regen status"
node dist/cli/main.js status --db "$DIR/regen.db"
echo
echo "The lab is still up: ssh -F $DIR/ssh_config mail1   |   tear it down: npm run lab -- down --dir $DIR"

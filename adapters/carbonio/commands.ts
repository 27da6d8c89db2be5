/**
 * Every command regen runs on a Carbonio node, one builder per operation, each returning the exact shell text
 * (POSIX sh) sent over SSH. To find "the command of step X", look here; adapters/carbonio/parse.ts reads the
 * answers and the port's modules (listed in adapters/carbonio/port.ts) wire the two.
 *
 * Rules every builder keeps:
 * - no secret is ever part of the text: the mesh secret arrives on stdin and stays in the node-side shell;
 * - anything variable (address, index, run id, accessor id) is validated and quoted with shq();
 * - markers regen parses are lines starting with `regen:`; everything else is the tools' own output.
 */
import {
  BACKUP_ROOT,
  CONFIG_JSON,
  CREDENTIALS_FILE,
  MAIN_JSON,
  PASSWORD_FILE,
  RESET_FILE,
  PEERS_FILE,
  PEERS_INFO_FILE,
  NODE_ID_FILE,
  RAFT_DIR,
  SERF_KEYRINGS,
  SD_DATA_DIR,
  SD_CONFIG_DIR,
  SD_HOME,
  UNHASHED,
  type Profile,
} from '../../machines/port.js';
import { sh, shq } from './shell.js';

export const UNIT = 'service-discover';
export const SD_USER = 'service-discover';
export const ZEXTRAS_USER = 'zextras';
export const LEADER_URL = 'http://127.0.0.1:8500/v1/status/leader';
export const CARBONIO_CLI = '/opt/zextras/bin/carbonio';
export const ZMPROV_CLI = '/opt/zextras/bin/zmprov';
/** First line of a backup manifest; a file without it is not a (complete) manifest. */
export const MANIFEST_HEADER = 'regen-backup-manifest 1';
export const MANIFEST_NAME = 'manifest';

/** The tools `inspect` looks for (command -v). */
export const INSPECTED_TOOLS = [
  'service-discover',
  'consul',
  'gpg',
  'tar',
  'systemctl',
  'sudo',
  'runuser',
  'jq',
  'wget',
  'curl',
  'flock',
] as const;

// Over `sudo -n` PATH is sudo's secure_path, over a root login it is sshd's default; both may miss the sbin
// directories where service-discover, runuser and the lab's wrappers live. LC_ALL=C keeps tool messages parseable.
const PREAMBLE = [
  'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"; export PATH',
  'LC_ALL=C; export LC_ALL',
].join('\n');

export function script(...lines: string[]): string {
  return sh([PREAMBLE, ...lines].join('\n'));
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** A Consul node id (data/node-id), as an extended regular expression for grep -Ex on the node. */
const UUID_ERE = '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}';

export function isIPv4(text: string): boolean {
  return IPV4.test(text);
}

export function requireIPv4(address: string): string {
  if (!IPV4.test(address)) throw new Error(`not an IPv4 address: ${JSON.stringify(address)}`);
  return address;
}

/** The run-specific backup directory on the node. */
export function backupDir(runId: string): string {
  if (!RUN_ID.test(runId)) throw new Error(`run id not usable as a directory name: ${JSON.stringify(runId)}`);
  return `${BACKUP_ROOT}/${runId}`;
}

const LOCALCONFIG_XML = '/opt/zextras/conf/localconfig.xml';

/** The files the wipe may remove, in backup order (the *.pem glob is expanded on the node). */
export const BACKED_UP = [CONFIG_JSON, MAIN_JSON, CREDENTIALS_FILE, `${SD_HOME}/*.pem`, PASSWORD_FILE, ...SERF_KEYRINGS] as const;

/** What the wipe removes per profile (seed 000: config.json, main.json, *.pem; seed 002: *.pem). */
export function wipedPaths(profile: Profile): string[] {
  const pem = `${SD_HOME}/*.pem`;
  // The gossip keyrings go too, whatever the profile: a kept keyring wins over the new `encrypt` key.
  return profile === 'current' ? [CONFIG_JSON, MAIN_JSON, pem, ...SERF_KEYRINGS] : [pem, ...SERF_KEYRINGS];
}

/**
 * Moves data/raft of a mesh server that does not lead into the run's backup directory (copied, synced, renamed,
 * then removed), so that it joins the new leader as a fresh voter. Refuses while the service runs.
 */
export function moveRaftAside(runId: string): string {
  const target = `${backupDir(runId)}${RAFT_DIR}`;
  return script(
    `if systemctl is-active --quiet ${UNIT}; then echo 'regen:running'; exit 4; fi`,
    `D=${RAFT_DIR}; T=${shq(target)}`,
    'if [ -d "$D" ]; then',
    '  if [ ! -d "$T" ]; then',
    `    mkdir -p "$(dirname "$T")" && rm -rf "$T.partial" && cp -a "$D" "$T.partial" && sync && mv "$T.partial" "$T" || { echo 'regen:copy-failed'; exit 6; }`,
    '  fi',
    '  rm -rf "$D" && sync',
    'fi',
    `echo 'regen:aside'`,
  );
}

/** Probe of moveRaftAside: `regen:present` while data/raft exists, else `regen:aside` (copy kept) or `regen:none`. */
export function probeRaftAside(runId: string): string {
  const target = `${backupDir(runId)}${RAFT_DIR}`;
  return script(
    `if [ -e ${RAFT_DIR} ]; then echo 'regen:present'; elif [ -d ${shq(target)} ]; then echo 'regen:aside'; else echo 'regen:none'; fi`,
  );
}

// ---- snippets shared by several scripts ------------------------------------------------------------------------

/** Prints the sha256 of the credentials file, or nothing when it is absent. */
const CREDENTIALS_SHA = `if [ -f ${CREDENTIALS_FILE} ]; then sha256sum < ${CREDENTIALS_FILE} | cut -d' ' -f1; fi`;

/** Prints config.json's bind_addr (jq when present, sed otherwise), or nothing. */
const CONFIG_BIND_ADDR = [
  `if [ -r ${CONFIG_JSON} ]; then`,
  `  if command -v jq >/dev/null 2>&1; then jq -r '.bind_addr // empty' ${CONFIG_JSON} 2>/dev/null | head -n 1`,
  `  else sed -n 's/.*"bind_addr"[[:space:]]*:[[:space:]]*"\\([^"]*\\)".*/\\1/p' ${CONFIG_JSON} | head -n 1; fi`,
  'fi',
].join('\n');

const KV = `kv() { printf '%s=%s\\n' "$1" "$2"; }`;
const PRESENT = `present() { if [ -f "$1" ]; then echo 1; else echo 0; fi; }`;

/**
 * Decrypts the node's credentials with the secret read from stdin (gpg --passphrase-fd 0) into a throw-away
 * GNUPGHOME and puts the bootstrap token's SecretID into CONSUL_HTTP_TOKEN of this shell only: it is never
 * printed and never leaves the node. Exits 3 with a marker when the token cannot be had.
 */
const TOKEN_FROM_CREDENTIALS = [
  `C=${CREDENTIALS_FILE}`,
  `[ -f "$C" ] || { echo 'regen:no-credentials'; exit 3; }`,
  'G=$(mktemp -d) || exit 70',
  // gpg starts an agent in the temporary home; stop it before removing the home so nothing is left running.
  `trap 'gpgconf --homedir "$G" --kill gpg-agent >/dev/null 2>&1; rm -rf "$G"' EXIT`,
  `trap 'exit 143' HUP INT TERM`,
  `secret_id() { if command -v jq >/dev/null 2>&1; then jq -r '.SecretID // empty'; else sed -n 's/.*"SecretID"[[:space:]]*:[[:space:]]*"\\([^"]*\\)".*/\\1/p' | head -n 1; fi; }`,
  // A pipeline's status is its last command's: keep gpg's own status in a file to tell a wrong secret from a
  // credentials file that has no token in it.
  `CONSUL_HTTP_TOKEN=$( { GNUPGHOME="$G" gpg --batch --quiet --pinentry-mode loopback --passphrase-fd 0 --decrypt "$C" 2>"$G/gpg.err"; echo $? > "$G/gpg.rc"; } | tar xOf - consul-acl-secret.json 2>/dev/null | secret_id)`,
  `if [ "$(cat "$G/gpg.rc" 2>/dev/null)" != 0 ]; then echo 'regen:bad-secret'; head -c 400 "$G/gpg.err" >&2; exit 3; fi`,
  `[ -n "$CONSUL_HTTP_TOKEN" ] || { echo 'regen:no-token'; exit 3; }`,
  'export CONSUL_HTTP_TOKEN',
].join('\n');

/** Runs a command as the service-discover user (its shell is nologin, so no `su`). */
function asServiceDiscover(inner: string): string {
  const q = shq(inner);
  return [
    `if command -v runuser >/dev/null 2>&1; then runuser -u ${SD_USER} -- sh -c ${q}`,
    `else sudo -n -u ${SD_USER} sh -c ${q}; fi`,
  ].join('\n');
}

// ---- read-only -------------------------------------------------------------------------------------------------

/** Preflight facts in one round trip, as `key=value` lines ending with `end=1` (parse.ts: parseInspect). */
export function inspect(): string {
  const tools = INSPECTED_TOOLS.join(' ');
  return script(
    KV,
    PRESENT,
    'kv hostname_s "$(hostname -s 2>/dev/null)"',
    'kv hostname_f "$(hostname -f 2>/dev/null)"',
    'kv uid "$(id -u)"',
    // The '\' at each line's end in `ip -o` output is part of the line; read -r keeps it.
    `ip -4 -o addr show 2>/dev/null | while IFS= read -r l; do kv ip "$l"; done`,
    'kv hostname_i "$(hostname -i 2>/dev/null)"',
    `for t in ${tools}; do kv "tool.$t" "$(command -v "$t" 2>/dev/null)"; done`,
    `kv service "$(systemctl is-active ${UNIT} 2>/dev/null)"`,
    `kv main_json "$(present ${MAIN_JSON})"`,
    `kv config_json "$(present ${CONFIG_JSON})"`,
    `kv credentials "$(present ${CREDENTIALS_FILE})"`,
    `kv credentials_sha256 "$(${CREDENTIALS_SHA})"`,
    `kv bind_addr "$(${CONFIG_BIND_ADDR}\n)"`,
    `kv consul_version "$(consul version 2>/dev/null | head -n 1)"`,
    // The release is the package's version: `service-discover version` prints a constant at every tag.
    `kv sd_package "$({ dpkg-query -W --showformat='\${Version}\\n' service-discover-server service-discover-agent || rpm -q --qf '%{VERSION}\\n' service-discover-server service-discover-agent; } 2>/dev/null | grep -E '^[0-9]' | head -n 1)"`,
    // setup connects to a master LDAP URL first (service-discover pkg/carbonio/ldap.go): the same connection.
    `D=$(sed -n '/name="ldap_master_url"/{n;s/.*<value>\\(.*\\)<\\/value>.*/\\1/p;}' ${LOCALCONFIG_XML} 2>/dev/null); R=none`,
    'for u in $D; do hp=${u#*://}; hp=${hp%%/*}; h=${hp%:*}; p=${hp##*:}; [ "$p" = "$hp" ] && p=389',
    '  if timeout 5 bash -c ": </dev/tcp/$h/$p" 2>/dev/null; then R="ok $u"; break; else R="unreachable $u"; fi',
    'done; kv directory "$R"',
    `if [ -x ${CARBONIO_CLI} ]; then kv profile current; elif [ -x ${ZMPROV_CLI} ]; then kv profile legacy; else kv profile none; fi`,
    'kv end 1',
  );
}

/**
 * The admin CLI's query for the mesh servers. `-l` reads the directory itself: without it zmprov (and `carbonio
 * prov`, the same ProvUtil) asks the node's mailbox over SOAP, which fails while the mailbox is down.
 */
export function meshServersCli(profile: Profile): string {
  return `${profile === 'current' ? 'carbonio prov' : 'zmprov'} -l gas service-discover`;
}

/** Mesh servers as the directory knows them, one FQDN per line, run as zextras (its login shell sets PATH). */
export function meshServers(profile: Profile): string {
  return `su - ${ZEXTRAS_USER} -c ${shq(meshServersCli(profile))}`;
}

/** The raft leader as this node's agent sees it: a JSON string "IP:8300", or "" when there is none. */
export function leaderAddress(): string {
  return script(
    `if command -v wget >/dev/null 2>&1; then exec wget -qO- ${LEADER_URL}`,
    `elif command -v curl >/dev/null 2>&1; then exec curl -fsS ${LEADER_URL}`,
    `else echo 'regen:no-http-client' >&2; exit 127; fi`,
  );
}

/** `consul members` with the bootstrap token from the node's credentials. stdin: the mesh secret. */
export function members(): string {
  return script(TOKEN_FROM_CREDENTIALS, 'consul members', 'exit $?');
}

/** The password file, behind a marker line; its stdout is secret (ExecOptions.secretOutput). */
export function readMeshSecret(): string {
  // Read without following a link (the service user owns the directory): dd's nofollow fails on one.
  return script(
    `if [ -L ${PASSWORD_FILE} ]; then echo 'regen:password file is a symbolic link' >&2; exit 5; fi`,
    `if [ -f ${PASSWORD_FILE} ]; then echo 'regen:present'; dd if=${PASSWORD_FILE} iflag=nofollow status=none || exit 5; else echo 'regen:absent'; fi`,
  );
}

/** Does the secret on stdin decrypt the credentials? Decrypts to /dev/null (the integrity check still runs). */
export function secretOpensCredentials(): string {
  return script(
    `C=${CREDENTIALS_FILE}`,
    `[ -f "$C" ] || { echo 'regen:no-credentials'; exit 0; }`,
    'G=$(mktemp -d) || exit 70',
    `trap 'gpgconf --homedir "$G" --kill gpg-agent >/dev/null 2>&1; rm -rf "$G"' EXIT`,
    `trap 'exit 143' HUP INT TERM`,
    `if GNUPGHOME="$G" gpg --batch --quiet --pinentry-mode loopback --passphrase-fd 0 --decrypt "$C" >/dev/null 2>"$G/gpg.err"`,
    `then echo 'regen:opens'`,
    `else echo 'regen:does-not-open'; head -c 400 "$G/gpg.err" >&2; fi`,
  );
}

/** The credentials file as base64 after a `sha256=` line (it is encrypted; regen checks the sha locally). */
export function readCredentials(): string {
  return script(
    `if [ -f ${CREDENTIALS_FILE} ]; then`,
    `  printf 'sha256=%s\\n' "$(sha256sum < ${CREDENTIALS_FILE} | cut -d' ' -f1)"`,
    `  base64 < ${CREDENTIALS_FILE}`,
    `else echo 'regen:absent'; fi`,
  );
}

/** ACL tokens, filtered on the node so a SecretID never crosses the wire. stdin: the mesh secret. */
export function listTokens(): string {
  const filter =
    '[.[] | {AccessorID, Description, Policies: [(.Policies // [])[] | .Name], CreateIndex, CreateTime}]';
  return script(
    `command -v jq >/dev/null 2>&1 || { echo 'regen:no-jq' >&2; exit 127; }`,
    TOKEN_FROM_CREDENTIALS,
    `L=$(consul acl token list -format=json) || exit $?`,
    `printf '%s\\n' "$L" | jq -c ${shq(filter)}`,
    'exit $?',
  );
}

/**
 * What proves a node is back, measured on the node (stdin: the mesh secret, read once into the shell): an RPC
 * through its own agent (`consul catalog nodes`) with the token of its credentials; the sha256 of its CA; `openssl
 * verify` of its certificate against that CA; whether `consul keyring -list` shows exactly the gossip key of its
 * credentials. Neither the token nor the key is printed: lines `rpc=`, `ca=`, `cert=`, `keyring=`.
 */
export function proveNode(): string {
  const gpg = `GNUPGHOME="$G" gpg --batch --quiet --pinentry-mode loopback --passphrase-fd 0 --decrypt "$C"`;
  return script(
    `C=${CREDENTIALS_FILE}`,
    `[ -f "$C" ] || { echo 'regen:no-credentials'; exit 3; }`,
    'IFS= read -r P || exit 3',
    'G=$(mktemp -d) || exit 70',
    `trap 'gpgconf --homedir "$G" --kill gpg-agent >/dev/null 2>&1; rm -rf "$G"' EXIT`,
    `trap 'exit 143' HUP INT TERM`,
    `member() { printf '%s\\n' "$P" | ${gpg} 2>/dev/null | tar xOf - "$1" 2>/dev/null; }`,
    `CONSUL_HTTP_TOKEN=$(member consul-acl-secret.json | sed -n 's/.*"SecretID"[[:space:]]*:[[:space:]]*"\\([^"]*\\)".*/\\1/p' | head -n 1)`,
    `[ -n "$CONSUL_HTTP_TOKEN" ] || { echo 'regen:bad-secret'; exit 3; }`,
    'export CONSUL_HTTP_TOKEN',
    'K=$(member gossip-key)',
    `if consul catalog nodes >/dev/null 2>"$G/rpc.err"; then echo 'rpc=ok'; else echo "rpc=$(head -c 300 "$G/rpc.err" | tr '\\n' ' ')"; fi`,
    `CA=${SD_HOME}/consul-agent-ca.pem`,
    `if [ -f "$CA" ]; then echo "ca=$(sha256sum < "$CA" | cut -d' ' -f1)"; else echo 'ca='; fi`,
    `CERT=$(ls ${SD_HOME}/dc1-server-consul-0.pem ${SD_HOME}/dc1-client-consul-0.pem 2>/dev/null | head -n 1)`,
    `if [ -n "$CERT" ] && openssl verify -CAfile "$CA" "$CERT" >/dev/null 2>&1; then echo 'cert=ok'; else echo 'cert=bad'; fi`,
    `KEYS=$(consul keyring -list 2>/dev/null | sed -n 's/^[[:space:]]*\\([A-Za-z0-9+/=]*\\) \\[[0-9]*\\/[0-9]*\\]$/\\1/p' | sort -u)`,
    `if [ -n "$K" ] && [ "$KEYS" = "$K" ]; then echo 'keyring=exact'; else echo "keyring=differs $(printf '%s\\n' "$KEYS" | grep -c .)"; fi`,
  );
}

/** The AccessorID of the token in the node's credentials (the one every call with them uses), as `self=ID`. stdin: the mesh secret. */
export function selfAccessor(): string {
  return script(
    TOKEN_FROM_CREDENTIALS,
    `S=$(consul acl token read -self -format=json) || exit $?`,
    `printf 'self=%s\\n' "$(printf '%s\\n' "$S" | sed -n 's/.*"AccessorID"[[:space:]]*:[[:space:]]*"\\([^"]*\\)".*/\\1/p' | head -n 1)"`,
  );
}

/**
 * `consul acl bootstrap`, expected to fail with the reset index. If it succeeds the cluster was never
 * bootstrapped and its output holds a management token: the output goes to a root-only file on the node and only
 * a marker naming that file is printed, so the token never crosses the wire.
 */
export function readResetIndex(): string {
  return script(
    'umask 077',
    'out=$(consul acl bootstrap 2>&1); rc=$?',
    'if [ "$rc" -eq 0 ]; then',
    '  f=/root/regen-unexpected-bootstrap-$(date +%s)-$$.json',
    `  if ! printf '%s\\n' "$out" > "$f" 2>/dev/null; then f=$(mktemp /tmp/regen-unexpected-bootstrap-XXXXXX) && printf '%s\\n' "$out" > "$f" || { echo 'regen:bootstrapped-unsaved'; exit 0; }; fi`,
    `  echo "regen:bootstrapped $f"`,
    '  exit 0',
    'fi',
    `printf '%s\\n' "$out"`,
    'exit "$rc"',
  );
}

/** Prints the raft recovery file behind a marker, or `regen:absent`. */
export function probeRaftRecovery(): string {
  return script(`if [ -f ${PEERS_FILE} ]; then echo 'regen:present'; cat ${PEERS_FILE}; else echo 'regen:absent'; fi`);
}

/** `regen:present` when Consul's peers.info sentinel is in the raft directory, else `regen:absent`. */
export function probePeersInfo(): string {
  return script(`if [ -e ${PEERS_INFO_FILE} ]; then echo 'regen:present'; else echo 'regen:absent'; fi`);
}

/** Prints the reset file behind a marker, or `regen:absent`. */
export function probeResetFile(): string {
  return script(`if [ -f ${RESET_FILE} ]; then echo 'regen:present'; cat ${RESET_FILE}; else echo 'regen:absent'; fi`);
}

export function serviceActive(): string {
  return `systemctl is-active ${UNIT}`;
}

/** Lists, one `left=PATH` line each, what the profile's wipe would still remove. */
export function probeWipe(profile: Profile): string {
  return script(`for f in ${wipedPaths(profile).join(' ')}; do if [ -e "$f" ]; then echo "left=$f"; fi; done`, 'echo end=1');
}

/** What a setup leaves behind, as `key=value` lines ending with `end=1` (parse.ts: parseSetupProbe). */
export function probeSetup(): string {
  return script(
    KV,
    PRESENT,
    `kv main_json "$(present ${MAIN_JSON})"`,
    `kv config_json "$(present ${CONFIG_JSON})"`,
    `kv bind_addr "$(${CONFIG_BIND_ADDR}\n)"`,
    `kv credentials_sha256 "$(${CREDENTIALS_SHA})"`,
    `kv service "$(systemctl is-active ${UNIT} 2>/dev/null)"`,
    `kv password_file "$(present ${PASSWORD_FILE})"`,
    'kv end 1',
  );
}

export function credentialsSha256(): string {
  return script(`if [ -f ${CREDENTIALS_FILE} ]; then printf 'sha256=%s\\n' "$(sha256sum < ${CREDENTIALS_FILE} | cut -d' ' -f1)"; else echo 'regen:absent'; fi`);
}

// ---- backup ----------------------------------------------------------------------------------------------------

/** Checks every copy against the manifest; the manifest's first line must be the header. */
function verifyManifest(): string {
  return [
    'verify() {',
    `  { IFS= read -r h && [ "$h" = ${shq(MANIFEST_HEADER)} ] || return 1`,
    '    while read -r p s z m o g; do',
    `      [ -f "$B$p" ] && [ ! -L "$B$p" ] || return 1`,
    `      if [ "$s" = ${shq(UNHASHED)} ]; then [ "$(stat -c %s "$B$p")" = "$z" ] || return 1`,
    `      else [ "$(sha256sum < "$B$p" | cut -d' ' -f1)" = "$s" ] || return 1; fi`,
    '    done',
    '  } < "$M"',
    '}',
  ].join('\n');
}

/**
 * Copies what the wipe removes into the run's backup directory, mirroring absolute paths, with `cp -a` (owner,
 * mode and times kept). The manifest (`path sha256 size mode owner group` under a header) is written last, to a
 * temporary name then renamed, so a half-done backup has none; an existing manifest that verifies is returned as
 * it is. A failed copy removes the partial backup directory (frees space) and touches nothing else.
 */
export function backup(runId: string): string {
  const dir = backupDir(runId);
  return script(
    `B=${shq(dir)}; M="$B/${MANIFEST_NAME}"`,
    verifyManifest(),
    'if [ -f "$M" ]; then',
    `  if verify; then echo 'regen:backup existing'; cat "$M"; exit 0; fi`,
    `  echo 'regen:backup corrupt'; exit 5`,
    'fi',
    `fail() { echo "regen:backup-failed $1" >&2; rm -rf "$B"; exit 6; }`,
    'umask 077',
    `mkdir -p "$B" || fail "$B"`,
    'T="$B/.manifest.tmp"',
    `printf '%s\\n' ${shq(MANIFEST_HEADER)} > "$T" || fail "$T"`,
    `for f in ${BACKED_UP.join(' ')}; do`,
    // The service user owns ${SD_HOME}: a link there could point root at any file; never follow one.
    `  case "$f" in ${SD_HOME}/*) [ -L "$f" ] && fail "$f (a symbolic link; regen does not follow links in ${SD_HOME})";; esac`,
    '  [ -f "$f" ] || continue',
    // A name with a space or a line break would forge manifest lines: the service user can name *.pem files.
    `  case "$f" in *[[:space:]]*) fail "$f (a file name with white space)";; esac`,
    '  d="$B$(dirname "$f")"',
    '  mkdir -p "$d" || fail "$d"',
    '  cp -a "$f" "$d/" || fail "$f"',
    `  [ -f "$B$f" ] && [ ! -L "$B$f" ] || fail "$f (not a regular file)"`,
    // The password file is compared, not hashed: its manifest line keeps only its size.
    `  if [ "$f" = ${PASSWORD_FILE} ]; then cmp -s "$B$f" "$f" || fail "$f (changed while copied)"; s=${shq(UNHASHED)}`,
    `  else s=$(sha256sum < "$B$f" | cut -d' ' -f1) || fail "$f"`,
    `    [ "$s" = "$(sha256sum < "$f" | cut -d' ' -f1)" ] || fail "$f (changed while copied)"; fi`,
    `  printf '%s %s %s\\n' "$f" "$s" "$(stat -c '%s %a %U %G' "$f")" >> "$T" || fail "$T"`,
    'done',
    // The copies must be on disk before the manifest says the backup is complete: the wipe comes next.
    'sync',
    `mv -f "$T" "$M" || fail "$M"`,
    'sync',
    `echo 'regen:backup created'`,
    'cat "$M"',
  );
}

/** Probe of backup(): the manifest if it exists and every copy matches it. */
export function probeBackup(runId: string): string {
  const dir = backupDir(runId);
  return script(
    `B=${shq(dir)}; M="$B/${MANIFEST_NAME}"`,
    verifyManifest(),
    `if [ ! -f "$M" ]; then echo 'regen:backup absent'`,
    `elif verify; then echo 'regen:backup verified'; cat "$M"`,
    `else echo 'regen:backup corrupt'; fi`,
  );
}

// ---- changes ---------------------------------------------------------------------------------------------------

/** Writes the reset index as the service-discover user (seed: `sudo -u service-discover bash -c "echo N > …"`). */
export function writeResetFile(index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new Error(`not a reset index: ${index}`);
  return script(asServiceDiscover(`echo ${index} > ${RESET_FILE}`));
}

/**
 * Consul's outage recovery (peers.json) naming only this server, written as service-discover: its node id comes
 * from data/node-id on the node itself. Exits 4 with a marker when the node has no node id (consul never ran).
 */
export function writeRaftRecovery(bindAddress: string): string {
  const addr = requireIPv4(bindAddress);
  return script(
    `[ -s ${NODE_ID_FILE} ] || { echo 'regen:no-node-id'; exit 4; }`,
    asServiceDiscover(
      // The node id goes into JSON: anything but a UUID (the service user can write the file) is refused.
      `ID=$(cat ${NODE_ID_FILE}) && printf '%s' "$ID" | grep -Eqx '${UUID_ERE}' || { echo 'regen:bad-node-id' >&2; exit 4; }\n` +
      `mkdir -p ${SD_DATA_DIR}/raft && printf '[{"id":"%s","address":"%s:8300","non_voter":false}]\\n' "$ID" ${addr} > ${PEERS_FILE}`,
    ),
  );
}

export function stopService(): string {
  return `systemctl stop ${UNIT}`;
}

export function startService(): string {
  return `systemctl start ${UNIT}`;
}

/** Removes what the profile's wipe removes; refuses while the service runs (the seed stops it first). */
export function wipe(profile: Profile): string {
  return script(
    `if [ "$(systemctl is-active ${UNIT} 2>/dev/null)" = active ]; then echo 'regen:service-active' >&2; exit 4; fi`,
    `rm -f ${wipedPaths(profile).join(' ')}`,
  );
}

// The setups run on a terminal: setup-dialog.ts.

/**
 * Installs the credentials file from stdin: temporary file in the same directory (so the rename is atomic),
 * root 0600, sha256 checked, then renamed over the old one. A mismatch leaves the old file untouched.
 */
export function writeCredentials(sha256: string): string {
  if (!SHA256.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
  return script(
    'umask 077',
    `[ -d ${SD_CONFIG_DIR} ] || { echo 'regen:no-config-dir' >&2; exit 4; }`,
    `T=$(mktemp ${SD_CONFIG_DIR}/.cluster-credentials.tar.gpg.XXXXXX) || exit 4`,
    `trap 'rm -f "$T"' EXIT`,
    `trap 'exit 143' HUP INT TERM`,
    'cat > "$T" || exit 4',
    'chown root:root "$T" && chmod 600 "$T" || exit 4',
    `S=$(sha256sum < "$T" | cut -d' ' -f1)`,
    `[ "$S" = ${sha256} ] || { echo "regen:sha256-mismatch $S" >&2; exit 5; }`,
    `mv -f "$T" ${CREDENTIALS_FILE} || exit 4`,
    `echo 'regen:written'`,
  );
}

/** Deletes one ACL token by accessor id with the bootstrap token. stdin: the mesh secret. */
export function deleteToken(accessorId: string): string {
  if (!UUID.test(accessorId)) throw new Error(`not an accessor id: ${JSON.stringify(accessorId)}`);
  return script(TOKEN_FROM_CREDENTIALS, `consul acl token delete -id ${accessorId}`, 'exit $?');
}

export const CATALOG_SERVICES_URL = 'http://127.0.0.1:8500/v1/catalog/services';
export const HEALTH_STATE_URL = 'http://127.0.0.1:8500/v1/health/state/any';

/**
 * The catalog's services and every health check through the node's own agent, as `services=JSON` and
 * `checks=JSON` lines. With a token (stdin: the mesh secret) the token of the credentials goes into a header file
 * in the root-only temporary directory, never onto curl's command line; without one the agent's default token
 * answers.
 */
export function readCatalog(withToken: boolean): string {
  const head = withToken
    ? [TOKEN_FROM_CREDENTIALS, `printf 'X-Consul-Token: %s\\n' "$CONSUL_HTTP_TOKEN" > "$G/h" || exit 70`, 'unset CONSUL_HTTP_TOKEN']
    : ['G=$(mktemp -d) || exit 70', `trap 'rm -rf "$G"' EXIT`, `trap 'exit 143' HUP INT TERM`, ': > "$G/h"'];
  return script(
    ...head,
    `command -v curl >/dev/null 2>&1 || { echo 'regen:no-curl' >&2; exit 127; }`,
    `S=$(curl -fsS -H @"$G/h" ${CATALOG_SERVICES_URL}) || exit $?`,
    `H=$(curl -fsS -H @"$G/h" ${HEALTH_STATE_URL}) || exit $?`,
    // The checks' output can be long: keep the fields compared when jq is there.
    `if command -v jq >/dev/null 2>&1; then H=$(printf '%s\\n' "$H" | jq -c '[.[] | {Node, CheckID, Status}]') || exit $?; fi`,
    `printf 'services=%s\\n' "$(printf '%s' "$S" | tr -d '\\n')"`,
    `printf 'checks=%s\\n' "$(printf '%s' "$H" | tr -d '\\n')"`,
  );
}

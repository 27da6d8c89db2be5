/**
 * `zmprov` and `carbonio prov` (both run Zimbra's ProvUtil): which way a query goes and what it needs.
 *
 * Without `-l` ProvUtil is a SOAP client of the admin service on `zimbra_zmprov_default_soap_server` (localhost),
 * port `zimbra_admin_service_port` (7071), authenticating with `zimbra_ldap_user` / `zimbra_ldap_password`; the
 * mailbox then reads the directory. With `-l` (or `zimbra_zmprov_default_to_ldap` true in localconfig, which
 * Carbonio's setup writes on every node that is not a mailbox) it reads the directory itself, through `ldap_url`
 * bound as `zimbra_ldap_userdn`. Sources: test/sim/FIDELITY.md, "zmprov / carbonio prov".
 *
 * Pure: the lab's carbonio-cli answers what it finds on the node (mailbox fault, directory reachability) with it.
 */

export type ProvTool = 'carbonio prov' | 'zmprov';

/** The localconfig keys ProvUtil reads to choose its way. */
export interface ProvLocalconfig {
  /** `zimbra_zmprov_default_to_ldap` (false on a mailbox node, true elsewhere). */
  defaultToLdap: boolean;
  /** `zimbra_zmprov_default_soap_server` (default localhost). */
  soapServer: string;
  /** `zimbra_admin_service_port` (default 7071). */
  adminPort: number;
}

export const DEFAULT_PROV_LOCALCONFIG: ProvLocalconfig = { defaultToLdap: false, soapServer: 'localhost', adminPort: 7071 };

/** What ProvUtil made of its argv: the way it goes and the command, or its answer when it stops before. */
export type ProvRoute =
  | { kind: 'run'; via: 'ldap' | 'soap'; command: string; args: string[] }
  | { kind: 'answer'; answer: ProvAnswer };

export interface ProvAnswer {
  code: number;
  stdout: string;
  stderr: string;
}

/** What the query meets on its way. `directoryError` is null when the directory answers. */
export interface ProvWorld {
  /** The admin SOAP service (mailboxd) at soapServer:adminPort answers. */
  mailboxUp: boolean;
  directoryError: string | null;
  /** `gas`: every Carbonio server; `gas service-discover`: the servers with that service enabled. */
  allServers: string[];
  meshServers: string[];
}

/** The commands the simulation knows (lower case, as ProvUtil looks them up): getAllServers and its alias. */
const KNOWN_COMMANDS = new Set(['gas', 'getallservers']);
const USAGE = '\nzmprov [args] [cmd] [cmd-args ...]\n\n';

const failWith = (code: number, stderr: string): ProvRoute => ({ kind: 'answer', answer: { code, stdout: '', stderr } });

/**
 * ProvUtil.run's option handling (commons-cli, options before the command): `-l/--ldap`, `-m/--master`,
 * `-s/--server host[:port]`; `-l` with `-s` and `-m` without `-l` are refused with exit 2.
 */
export function provRoute(argv: string[], lc: ProvLocalconfig): ProvRoute {
  // fixArgs: a leading "prov" is dropped, which is how `carbonio prov …` reaches ProvUtil.
  const args = argv[0]?.toLowerCase() === 'prov' ? argv.slice(1) : [...argv];
  let ldap = false;
  let master = false;
  let server: string | null = null;
  while (args.length > 0 && (args[0] ?? '').startsWith('-')) {
    const opt = args.shift() ?? '';
    if (opt === '-l' || opt === '--ldap') ldap = true;
    else if (opt === '-m' || opt === '--master') master = true;
    else if (opt === '-s' || opt === '--server') {
      if (args.length === 0) return failWith(1, `error: Missing argument for option: s\n`);
      server = args.shift() ?? '';
    } else return failWith(1, `error: Unrecognized option: ${opt}\n`);
  }
  if (ldap && server !== null) return failWith(2, 'error: cannot specify both -l and -s at the same time\n');
  const useLdap = server !== null ? false : ldap || lc.defaultToLdap;
  if (!useLdap && master) return failWith(2, 'error: cannot specify -m when -l is not specified\n');
  const [command = '', ...rest] = args;
  // The command is looked up before any connection: an unknown one prints the usage (on stdout) and exits 1.
  if (!KNOWN_COMMANDS.has(command.toLowerCase())) return { kind: 'answer', answer: { code: 1, stdout: USAGE, stderr: '' } };
  return { kind: 'run', via: useLdap ? 'ldap' : 'soap', command: command.toLowerCase(), args: rest };
}

/** ProvUtil's catch of a ServiceException: `ERROR: code (message) (cause: class message)`, exit 2. */
function serviceError(code: string, message: string, cause: string): ProvAnswer {
  return { code: 2, stdout: '', stderr: `ERROR: ${code} (${message}) (cause: ${cause})\n` };
}

/** The answer of a query that got past the options, given what it meets. */
export function provAnswer(route: Extract<ProvRoute, { kind: 'run' }>, lc: ProvLocalconfig, world: ProvWorld): ProvAnswer {
  if (route.via === 'soap' && !world.mailboxUp) {
    // SoapProvisioning.invoke wraps the transport's IOException; the HttpClient text inside is inferred.
    const connect = `Connect to ${lc.soapServer}:${lc.adminPort} [${lc.soapServer}/127.0.0.1] failed: Connection refused`;
    return serviceError('zclient.IO_ERROR', `invoke ${connect}, server: ${lc.soapServer}`, `org.apache.http.conn.HttpHostConnectException ${connect}`);
  }
  if (world.directoryError !== null) {
    // Either way the servers are read from the directory (by the mailbox over SOAP); the wording is inferred.
    return serviceError('ldap.LDAP_ERROR', `LDAP error: unable to connect: ${world.directoryError}`, `com.unboundid.ldap.sdk.LDAPException ${world.directoryError}`);
  }
  const [service = ''] = route.args;
  const list = service === '' ? world.allServers : service === 'service-discover' ? world.meshServers : [];
  return { code: 0, stdout: list.map((s) => `${s}\n`).join(''), stderr: '' };
}

/** The localconfig keys above, read from localconfig.xml text (absent keys keep ProvUtil's defaults). */
export function provLocalconfig(xml: string): ProvLocalconfig {
  const value = (key: string): string | undefined => new RegExp(`<key name="${key}">\\s*<value>([^<]*)</value>`).exec(xml)?.[1]?.trim();
  const port = Number(value('zimbra_admin_service_port'));
  return {
    defaultToLdap: value('zimbra_zmprov_default_to_ldap') === 'true',
    soapServer: value('zimbra_zmprov_default_soap_server') || DEFAULT_PROV_LOCALCONFIG.soapServer,
    adminPort: Number.isInteger(port) && port > 0 ? port : DEFAULT_PROV_LOCALCONFIG.adminPort,
  };
}

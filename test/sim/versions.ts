/**
 * The service-discover releases the simulation models, and what differs between them (zextras/service-discover,
 * read at each tag).
 *
 * How a node tells its version: not the CLI. `service-discover version` prints the constant `ApplicationVersion`
 * ("0.1.0" at every tag, cmd/server/config/constants.go) and `agent version: N/A` (pkg/command/version.go). The
 * package does: build/server/PKGBUILD and build/agent/PKGBUILD (cli/server/PKGBUILD, cli/agent/PKGBUILD before 0.2) name the packages
 * `service-discover-server` / `service-discover-agent` with `pkgver` = the tag and `pkgrel` 1 (0 at v0.1.1), so
 * `dpkg-query -W -f='${Version}' service-discover-server` answers e.g. `0.7.2-1` (the Debian version
 * `pkgver-pkgrel` is *inferred* from how yap builds .deb packages; not read).
 */

export interface SdRelease {
  version: string;
  /** preRun refuses when main.json exists (cmd/server/command/setup/common.go; since v0.1.5). */
  mainJsonCheck: string | null;
  /** The first instance uploads, a join downloads, the credentials through LDAP (`carbonioMeshCredentials`, since v0.1.7). */
  ldapCredentials: boolean;
  /** Consul the release ships with (lab choice: 1.9.3 in seed 002's output; *inferred* for the others). */
  consul: string;
}

export const RELEASES: readonly SdRelease[] = [
  // No main.json check yet (v0.1.1 … v0.1.4): the release seed 002 (rm *.pem only) works with.
  { version: '0.1.4', mainJsonCheck: null, ldapCredentials: false, consul: '1.9.3' },
  { version: '0.1.6', mainJsonCheck: 'setup of service-discover already perfomed, manually reset and try again.', ldapCredentials: false, consul: '1.9.3' },
  { version: '0.1.9', mainJsonCheck: 'setup of service-discover already performed, manually reset and try again.', ldapCredentials: true, consul: '1.10.12' /* inferred */ },
  { version: '0.7.2', mainJsonCheck: 'setup of service-discover already performed, manually reset and try again', ldapCredentials: true, consul: '1.19.2' },
];

export const DEFAULT_VERSION = { current: '0.7.2', legacy: '0.1.4' } as const;

export function release(version: string): SdRelease {
  const r = RELEASES.find((x) => x.version === version);
  if (r === undefined) throw new Error(`service-discover ${version} is not modelled (modelled: ${RELEASES.map((x) => x.version).join(', ')})`);
  return r;
}

/** The refusal text when main.json exists, null where the release has no such check. */
export function mainJsonRefusal(version: string | undefined, profile: 'current' | 'legacy'): string | null {
  return release(version ?? DEFAULT_VERSION[profile]).mainJsonCheck;
}

/** Does the release move the credentials through LDAP? */
export function credentialsInLdap(version: string | undefined, profile: 'current' | 'legacy'): boolean {
  return release(version ?? DEFAULT_VERSION[profile]).ldapCredentials;
}

/** What the package manager reports for the installed package. */
export function packageVersion(version: string): string {
  return `${version}-1`;
}

/**
 * The catalog's services and health checks (GET /v1/catalog/services, GET /v1/health/state/any), as an agent
 * answers them. Sources (hashicorp/consul):
 * - agent/catalog_endpoint.go CatalogServices → Catalog.ListServices: a map service name → tags, filtered by the
 *   caller's ACL (service:read); a token that reads nothing gets `{}`, not an error;
 * - agent/health_endpoint.go HealthChecksInState with state `any` → Health.ChecksInState: every check with Node,
 *   CheckID, ServiceName, Status (passing | warning | critical), filtered by node:read and service:read;
 * - a request without a token is answered with the agent's default token (agent/token/store.go UserToken: "the
 *   token used for user requests when none is given"); service-discover sets it to the node's own token, whose
 *   policy reads every node and writes every service (zextras/service-discover pkg/command/common.go,
 *   SetACLToken, ACLPolicyTemplateText);
 * - every server registers the `consul` service in the catalog (agent/consul/leader.go), and every node has
 *   the `serfHealth` check, critical when serf sees it failed (agent/consul/leader.go reconcileMember).
 * Registrations other than `consul` are kept per world beside the model's state; tests change them to play a
 * service that disappears or a check that fails.
 */
import { catalogNodes, memberView, upAgent, type World } from './model.js';

export type CheckStatus = 'passing' | 'warning' | 'critical';

interface Registration {
  service: string;
  checkId: string;
  status: CheckStatus;
}

const registry = new WeakMap<World, Map<string, Registration[]>>();

function regs(w: World): Map<string, Registration[]> {
  let r = registry.get(w);
  if (r === undefined) {
    r = new Map();
    registry.set(w, r);
  }
  return r;
}

/** Register a service with one passing check `service:<name>` on a node (the node's agent registered it). */
export function registerService(w: World, node: string, service: string): void {
  const list = regs(w).get(node) ?? [];
  regs(w).set(node, [...list.filter((x) => x.service !== service), { service, checkId: `service:${service}`, status: 'passing' }]);
}

export function deregisterService(w: World, node: string, service: string): void {
  regs(w).set(node, (regs(w).get(node) ?? []).filter((x) => x.service !== service));
}

export function setCheckStatus(w: World, node: string, checkId: string, status: CheckStatus): void {
  const list = regs(w).get(node) ?? [];
  if (!list.some((x) => x.checkId === checkId)) throw new Error(`no check ${checkId} on ${node}`);
  regs(w).set(node, list.map((x) => (x.checkId === checkId ? { ...x, status } : x)));
}

/** The token the request runs with: the one given, else the agent's default token; undefined: anonymous. */
function effectiveToken(w: World, viewer: string, secretId: string | undefined): string | undefined {
  if (secretId !== undefined && secretId !== '') return secretId;
  const accessor = upAgent(w, viewer)?.agentTokenAccessor ?? null;
  return accessor === null ? undefined : w.state.tokens.find((t) => t.accessorId === accessor)?.secretId;
}

/** Whether the caller reads the catalog (the RPC reaches a leader over TLS, the token is known and reads nodes). */
function readable(w: World, viewer: string, secretId: string | undefined): boolean {
  // catalogNodes throws for a down agent, no leader or an unknown token, and lists nothing for a token that reads nothing.
  return catalogNodes(w, viewer, effectiveToken(w, viewer, secretId)).length > 0;
}

/** Consul node name → inventory node, for the members the registry knows. */
function consulNames(w: World): Map<string, string> {
  return new Map(Object.values(w.state.members).map((m) => [m.node, m.nodeName] as const));
}

/** GET /v1/catalog/services through `viewer`'s agent. */
export function catalogServices(w: World, viewer: string, secretId?: string): Record<string, string[]> {
  if (!readable(w, viewer, secretId)) return {};
  const out: Record<string, string[]> = {};
  if (Object.values(w.state.members).some((m) => m.type === 'server')) out['consul'] = [];
  const known = consulNames(w);
  for (const [node, list] of regs(w)) if (known.has(node)) for (const r of list) out[r.service] = [];
  return out;
}

export interface HealthCheckJson {
  Node: string;
  CheckID: string;
  ServiceName: string;
  Status: CheckStatus;
}

/** GET /v1/health/state/any through `viewer`'s agent. */
export function healthStateAny(w: World, viewer: string, secretId?: string): HealthCheckJson[] {
  if (!readable(w, viewer, secretId)) return [];
  const alive = new Map(memberView(w, viewer).map((m) => [m.Name, m.Status === 1] as const));
  const out: HealthCheckJson[] = [];
  for (const [node, nodeName] of consulNames(w)) {
    out.push({ Node: nodeName, CheckID: 'serfHealth', ServiceName: '', Status: alive.get(nodeName) === true ? 'passing' : 'critical' });
    for (const r of regs(w).get(node) ?? []) out.push({ Node: nodeName, CheckID: r.checkId, ServiceName: r.service, Status: r.status });
  }
  return out.sort((a, b) => `${a.Node}/${a.CheckID}`.localeCompare(`${b.Node}/${b.CheckID}`));
}


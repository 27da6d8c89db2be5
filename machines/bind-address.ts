/**
 * Choosing the bind address for `service-discover setup` from what inspect() saw. setup accepts only an address
 * of a non-`lo` interface; `hostname -i` (the seed's `$(hostname -i)`) is a hint at most, since on Debian it
 * often answers 127.0.1.1, which setup rejects.
 */
import { NeedsOperatorError, RegenError } from './errors.js';
import type { InventoryNode, NodeFacts } from './port.js';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export interface BindChoice {
  address: string;
  /** Why this address, in the operator's words (for the plan and the log). */
  reason: string;
}

function usable(address: string): boolean {
  return IPV4.test(address) && !address.startsWith('127.') && !address.startsWith('169.254.');
}

/**
 * The inventory's `address` wins and must be one of the node's interface addresses. Otherwise, in order: the
 * address config.json already binds, the SSH host when it is an address of the node, a `hostname -i` answer that
 * is an interface address, the node's only usable address. Anything else is the operator's call.
 */
export function chooseBindAddress(inv: InventoryNode, facts: NodeFacts): BindChoice {
  const candidates = facts.addresses.filter(usable);
  if (inv.address !== undefined) {
    if (!usable(inv.address)) {
      throw new RegenError('preflight', `${inv.name}: inventory address ${inv.address} cannot be a bind address (loopback, link-local or not IPv4)`, {
        node: inv.name,
        hint: `set the node's address in the inventory to one of: ${candidates.join(', ') || '(none found)'}`,
      });
    }
    if (!facts.addresses.includes(inv.address)) {
      throw new RegenError('preflight', `${inv.name}: inventory address ${inv.address} is not on any non-loopback interface of the node (it has ${facts.addresses.join(', ') || 'none'})`, {
        node: inv.name,
        hint: 'correct the address in the inventory',
      });
    }
    return { address: inv.address, reason: 'inventory address' };
  }
  const configured = facts.configuredBindAddress;
  if (configured !== null && candidates.includes(configured)) return { address: configured, reason: 'current config.json bind_addr' };
  if (candidates.includes(inv.sshHost)) return { address: inv.sshHost, reason: 'SSH host address' };
  const hinted = facts.hostnameAddresses.filter((a) => candidates.includes(a));
  if (hinted.length === 1) return { address: hinted[0] as string, reason: '`hostname -i`, an interface address' };
  if (candidates.length === 1) return { address: candidates[0] as string, reason: 'the only non-loopback IPv4 address' };
  const refused = facts.hostnameAddresses.filter((a) => a.startsWith('127.'));
  throw new NeedsOperatorError(
    `${inv.name}: cannot tell which address to bind: interfaces have ${candidates.join(', ') || 'no usable IPv4 address'}` +
      (refused.length > 0 ? `; hostname -i answers ${refused.join(' ')} (loopback, refused by service-discover)` : ''),
    { node: inv.name, hint: `set address: for ${inv.name} in the inventory` },
  );
}

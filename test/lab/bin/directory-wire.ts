/** What the lab directory says instead of a BindResponse when it refuses the nodes' credentials (bin/directory.ts). */
export const BIND_REJECTED = 'regen-lab: bind rejected';

/** The Secret type lives with the machine (machines/secret.ts); this path stays for the adapters' imports. */
export { MASK, Secret } from '../../machines/secret.js';

export { Secret, MASK } from './secret.js';
export { Redactor, redactor } from './redact.js';
export { hiddenPrompt } from './prompt.js';
export type { PromptStreams } from './prompt.js';
export {
  obtainMeshSecret,
  generateMeshSecret,
  parseAnsiblePasswordFile,
  MESH_SECRET_ENV,
  ANSIBLE_PASSWORD_SUFFIX,
} from './mesh-secret.js';
export type { MeshSecret, MeshSecretSource, ObtainMeshSecretOptions } from './mesh-secret.js';

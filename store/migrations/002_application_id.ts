import type { Migration } from './migration.js';
import { REGEN_APPLICATION_ID } from './application-id.js';

/**
 * Marks the file as regen's (SQLite's application_id header field), so a database regen did not create is told
 * apart before it is adopted. No table changes.
 */
const applicationId: Migration = {
  version: 2,
  name: 'application id',
  up(db) {
    db.pragma(`application_id = ${REGEN_APPLICATION_ID}`);
  },
};

export default applicationId;

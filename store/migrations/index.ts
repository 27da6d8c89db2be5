/** The ordered list of schema migrations; append new ones, never edit or reorder a released one. */
import { checkMigrationOrder, type Migration } from './migration.js';
import initial from './001_initial.js';
import applicationId from './002_application_id.js';
import stoppedStatus from './003_stopped_status.js';

export type { Migration } from './migration.js';

export const migrations: readonly Migration[] = [initial, applicationId, stoppedStatus];

checkMigrationOrder(migrations);

export const latestVersion: number = migrations.length;

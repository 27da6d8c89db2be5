/**
 * The fixture of the command-function tests: before each test a fake cluster and, in a temporary directory, its
 * inventory (removed after the test); StartOptions and ResumeOptions that run regen against that cluster as the
 * node port, with no SSH and fast timings.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { ResumeOptions } from '../../cli/commands/resume.js';
import type { StartOptions } from '../../cli/commands/start.js';
import { createFakeCluster, type FakeCluster, type FakeClusterOptions } from '../sim/fake-cluster.js';
import { FAST } from './machine-harness.js';

export interface ClusterDir {
  /** The temporary directory of the current test. */
  readonly dir: string;
  readonly cluster: FakeCluster;
  /** A file in the directory: `regen.db` and `inventory.yaml` are the defaults of the options below. */
  path(name: string): string;
  /** Another fake cluster for this test, with the inventory rewritten to its nodes. */
  useCluster(opts: FakeClusterOptions): FakeCluster;
  /** `regen start` against the cluster: every option set, as yargs would, then `extra`. */
  startOptions(extra?: Partial<StartOptions>): StartOptions;
  /** `regen resume` against the cluster. */
  resumeOptions(extra?: Partial<ResumeOptions>): ResumeOptions;
}

export interface ClusterDirOptions {
  /** Of the temporary directory's name. */
  prefix: string;
  /** The cluster made before each test. */
  cluster: FakeClusterOptions;
  /** The inventory's `cluster:` name (default testmesh). */
  name?: string;
  /** Options every start of the file shares (runId, maxUnitRounds…). */
  start?: Partial<StartOptions>;
  /** Called after the directory and its inventory are made, for more files in it. */
  files?: (dir: string) => void;
}

const CONNECT = { sshConfig: undefined, knownHosts: undefined, acceptNewHostKeys: false, connectTimeoutS: 5, commandTimeoutS: 60 };

/** Registers the beforeEach/afterEach that make and remove the fixture; call it at the top of a test file. */
export function useClusterDir(o: ClusterDirOptions): ClusterDir {
  let dir = '';
  let cluster: FakeCluster | undefined;
  const name = o.name ?? 'testmesh';

  const fx: ClusterDir = {
    get dir() {
      return dir;
    },
    get cluster() {
      if (cluster === undefined) throw new Error('the cluster fixture is made in beforeEach');
      return cluster;
    },
    path: (file) => join(dir, file),
    useCluster(opts) {
      cluster = createFakeCluster(opts);
      const yaml = [`cluster: ${name}`, 'nodes:', ...cluster.nodes.map((n) => `  - name: ${n}`)].join('\n');
      writeFileSync(join(dir, 'inventory.yaml'), `${yaml}\n`);
      return cluster;
    },
    startOptions: (extra = {}) => ({
      db: join(dir, 'regen.db'),
      json: false,
      inventory: join(dir, 'inventory.yaml'),
      inventoryFormat: 'auto',
      cluster: undefined,
      leader: undefined,
      yes: true,
      parallel: 2,
      dryRun: false,
      revokeOldTokens: false,
      maxUnitRounds: 3,
      passwordFile: undefined,
      generatePassword: false,
      ...CONNECT,
      makePort: async () => fx.cluster.port,
      runDeps: FAST,
      ...o.start,
      ...extra,
    }),
    resumeOptions: (extra = {}) => ({
      db: join(dir, 'regen.db'),
      json: false,
      run: undefined,
      passwordFile: undefined,
      maxRecoveries: 5,
      yes: true,
      ...CONNECT,
      makePort: async () => fx.cluster.port,
      runDeps: FAST,
      ...extra,
    }),
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), o.prefix));
    fx.useCluster(o.cluster);
    o.files?.(dir);
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
    cluster = undefined;
  });
  return fx;
}

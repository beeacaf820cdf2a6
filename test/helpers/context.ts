import {join} from 'node:path'

import {loadEnvironment} from '../../src/config/load.js'
import {BackupContext, silentReporter} from '../../src/services/context.js'
import {KeyRing} from '../../src/services/keys.js'
import {LocalStore} from '../../src/store/local.js'
import {Store} from '../../src/store/port.js'
import {Project} from './project.js'

/** A service context for a test project, as the CLI would build it from `variables`; `store` replaces its store. */
export async function contextFor(
  project: Project,
  variables: NodeJS.ProcessEnv,
  store?: Store,
): Promise<BackupContext> {
  return {
    env: await loadEnvironment({cwd: project.root, variables}),
    keys: new KeyRing({variables}),
    now: () => new Date(),
    reporter: silentReporter,
    signal: new AbortController().signal,
    stallTimeoutMs: 60_000,
    statePath: join(project.home, 'state.json'),
    store: store ?? new LocalStore(project.store),
    tempRoot: project.root,
    toolVersion: 'test',
  }
}

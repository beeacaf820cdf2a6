import {expect} from 'chai'

import {cli, CliResult, cliWithin, Project, writeEnvironments} from './project.js'

export interface JsonError {
  code: string
  message: string
  suggestion: string
}

/**
 * Two environments of one server's databases, `live` and `test` (with `testMedia`, a media folder),
 * and a backup of live: its id. The DSNs travel in LIVE_URL and TEST_URL, which a test may change.
 */
export async function backedUpLive(
  project: Project,
  urls: {live: string; test: string},
  testMedia?: string,
): Promise<string> {
  writeEnvironments(project, {
    live: {database: '${LIVE_URL}', store: './.divio/backups'},
    test: {database: '${TEST_URL}', ...(testMedia ? {media: testMedia} : {}), store: './.divio/backups'},
  })
  Object.assign(project.env, {LIVE_URL: urls.live, TEST_URL: urls.test})
  const created = await cli(project, ['create', '--json'])
  expect(created.status, created.stderr).to.equal(0)
  return (created.json() as {id: string}).id
}

/**
 * `restore ID --to-env test` that the target refuses (exit 7), with `flags`: its JSON error. Nothing
 * it prints may hold `secret`, the password of the target's DSN.
 */
export async function refusedRestore(
  project: Project,
  id: string,
  flags: string[],
  secret: string,
): Promise<JsonError> {
  const refused = await cli(project, ['restore', id, '--to-env', 'test', '--confirm', 'test', '--json', ...flags])
  expect(refused.status, refused.stdout + refused.stderr).to.equal(7)
  expect(refused.stdout + refused.stderr).to.not.include(secret)
  return (refused.json() as {error: JsonError}).error
}

/**
 * A database-only backup of the project's one environment, `url`, whose stages may wait `stallSeconds`:
 * its id, and the environment that sets them, for the tests of a restore held up by the app's locks.
 */
export async function backedUpWithStall(
  project: Project,
  url: string,
  stallSeconds: number,
): Promise<{env: NodeJS.ProcessEnv; id: string}> {
  const env = {DATABASE_URL: url, DIVIO_BACKUP_STALL_SECONDS: String(stallSeconds)}
  const created = await cli(project, ['create', '--db-only', '--json'], env)
  expect(created.status, created.stderr).to.equal(0)
  return {env, id: (created.json() as {id: string}).id}
}

/** `restore ID --db-only` over live, without a safety backup; it must end within 120 s (see cliWithin). */
export function restoredOverLive(project: Project, id: string, env: NodeJS.ProcessEnv): Promise<CliResult> {
  return cliWithin(120_000, project, ['restore', id, '--db-only', '--confirm', 'live', '--no-safety-backup'], env)
}

import {run} from '../../lib/process.js'

/** How often the watch looks at the restore's session. */
const POLL_MS = 1000

/** What made a restore give up: how long it waited, and on whom. */
export interface LockWait {
  /** The sessions holding the lock, as `pg_stat_activity` shows them to this user. */
  holders: string
  seconds: number
}

/**
 * Watches a restore's session (known by its application_name) and cancels the statement it runs once
 * it has waited `limitMs` for a lock that another session holds: the app in a transaction, a worker, a
 * migration. pg_restore starts with `SET lock_timeout = 0` (the archive's fixed session state), which
 * overrides any lock_timeout given from outside, so only another session can end the wait.
 */
export class LockWatch {
  private cancelling: Promise<boolean> | undefined
  private timer: NodeJS.Timeout | undefined
  /** Set once the watch has cancelled the restore's statement. */
  private waited: LockWait | undefined
  private waitingSince: number | undefined

  constructor(
    private readonly psql: (sql: string) => Promise<string>,
    private readonly applicationName: string,
    private readonly limitMs: number,
  ) {
    this.schedule()
  }

  /**
   * What the watch did, once a cancel it sent has been answered: the restore can fail from the cancel
   * before psql has said it was sent.
   */
  async outcome(): Promise<LockWait | undefined> {
    await this.cancelling
    return this.waited
  }

  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private async look(): Promise<void> {
    const name = this.applicationName.replaceAll("'", "''")
    const row = await this.psql(
      `SELECT a.pid, coalesce(a.wait_event_type, ''), coalesce((SELECT string_agg(format('%s (%s%s%s)', b.pid, coalesce(nullif(b.application_name, ''), 'no application name'), coalesce(', from ' || host(b.client_addr), ''), coalesce(', ' || b.state, '')), '; ') FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))), '') FROM pg_stat_activity a WHERE a.application_name = '${name}'`,
    ).catch(() => '')
    const [pid, waitType, holders] = row.trim().split('|')
    if (pid === undefined || pid === '' || waitType !== 'Lock') {
      this.waitingSince = undefined
      return
    }

    const now = Date.now()
    this.waitingSince ??= now
    if (now - this.waitingSince < this.limitMs) return
    // Only if it still waits: a statement that got its lock meanwhile goes on.
    const waited = {holders: holders || 'another session', seconds: Math.round((now - this.waitingSince) / 1000)}
    this.cancelling = this.psql(
      `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = ${Number(pid)} AND wait_event_type = 'Lock'`,
    ).then(
      (answer) => answer.trim() === 't',
      () => false,
    )
    if (!(await this.cancelling)) return
    this.waited = waited
    this.stop()
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.look().then(
        () => {
          if (this.timer !== undefined && this.waited === undefined) this.schedule()
        },
        () => {},
      )
    }, POLL_MS)
    this.timer.unref()
  }
}

/** A psql runner for the watch: one query, its rows as `a|b|c` lines, within a few seconds. */
export function psqlQuery(psql: string, uri: string, env: NodeJS.ProcessEnv): (sql: string) => Promise<string> {
  return (sql) => run(psql, ['-XAtq', '-c', sql, `--dbname=${uri}`], {env, timeoutMs: 5000})
}

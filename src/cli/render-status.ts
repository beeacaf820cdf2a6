import {formatDuration} from '../domain/duration.js'
import {formatDay, formatInstant, renderTable} from '../domain/format.js'
import {DrillResult} from '../services/drill.js'
import {StatusResult} from '../services/status.js'
import {OUTPUT_WIDTH, wrap} from './render.js'

/** `status`: one line an environment, within 100 columns; what is late or unreadable is said after. */
export function renderStatus(result: StatusResult): string {
  const rows = result.environments.map((status) => {
    const name = `${status.app}/${status.environment}`
    if (status.error)
      return [name, 'unreadable', '-', '-', '-', status.nextScheduledAt ? formatInstant(status.nextScheduledAt) : '-']
    const {newest} = status
    return [
      name,
      newest ? formatInstant(newest.completedAt) : 'none',
      newest ? formatDuration(newest.ageSeconds) : '-',
      status.lastPassedDrill ? formatDay(status.lastPassedDrill.endedAt) : 'never',
      String(status.damaged ?? 0),
      status.late === undefined ? '-' : status.late ? 'LATE' : 'ok',
      status.nextScheduledAt ? formatInstant(status.nextScheduledAt) : '-',
    ]
  })
  return renderTable(['ENVIRONMENT', 'NEWEST COMPLETE', 'AGE', 'DRILLED', 'DAMAGED', 'FRESH', 'NEXT SLOT'], rows)
}

/** `drill`: each check with its verdict, then where the receipt is. */
export function renderDrill(result: DrillResult): string {
  const lines = result.checks.map((check) =>
    wrap(`${check.ok ? 'ok    ' : 'FAILED'}  ${check.name}: ${check.detail}`, OUTPUT_WIDTH, 8),
  )
  lines.push(
    `${result.passed ? 'Drill passed' : 'Drill FAILED'} for backup ${result.backupId} in ${result.durationSeconds.toFixed(1)} s.`,
    wrap(`Receipt: ${result.receiptKey}`, OUTPUT_WIDTH, 2),
  )
  return lines.join('\n')
}

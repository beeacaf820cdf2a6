import {formatDuration} from '../domain/duration.js'
import {formatInstant, renderTable} from '../domain/format.js'
import {StatusResult} from '../services/status.js'

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
      String(status.damaged ?? 0),
      status.late === undefined ? '-' : status.late ? 'LATE' : 'ok',
      status.nextScheduledAt ? formatInstant(status.nextScheduledAt) : '-',
    ]
  })
  return renderTable(['ENVIRONMENT', 'NEWEST COMPLETE', 'AGE', 'DAMAGED', 'FRESH', 'NEXT SLOT'], rows)
}

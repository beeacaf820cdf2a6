import {ComponentFreshness} from './freshness.js'

/**
 * `status --format prometheus`: the text exposition format (version 0.0.4) that node_exporter's
 * textfile collector reads. Names follow Prometheus's conventions: the `divio_backup_` namespace,
 * base units in the name (`_seconds`, `_bytes`), and `_total` only on counters; the number of damaged
 * backups goes down when they are deleted, so it is the gauge `divio_backup_damaged_backups`.
 */

/** What the metrics of one environment are made of: a row of `status`. */
export interface EnvironmentMetrics {
  app: string
  components?: {database?: ComponentFreshness; media?: ComponentFreshness}
  damaged?: number
  environment: string
  /** Set when the environment could not be read: then only `divio_backup_store_up 0` is said of it. */
  error?: unknown
  /** The newest passed drill, and the components it covered; null while none has passed. */
  lastPassedDrill?: null | {components: ReadonlyArray<'database' | 'media'>; endedAt: string}
}

interface Family {
  help: string
  name: string
  samples: Array<{labels: Record<string, string>; value: number}>
}

export function renderMetrics(environments: readonly EnvironmentMetrics[]): string {
  const up = family('divio_backup_store_up', 'Whether the store of the environment could be read (1) or not (0).')
  const success = family(
    'divio_backup_last_success_timestamp_seconds',
    'When the newest complete backup holding the component was committed, in Unix time.',
  )
  const duration = family(
    'divio_backup_last_duration_seconds',
    'How long the newest complete backup holding the component took, from start to commit.',
  )
  const size = family('divio_backup_last_size_bytes', 'The size of the component in its newest complete backup.')
  const drill = family(
    'divio_backup_last_drill_success_timestamp_seconds',
    'When the newest passed restore drill of the component ended, in Unix time.',
  )
  const damaged = family(
    'divio_backup_damaged_backups',
    'Committed backups whose manifest cannot be read or authenticated.',
  )
  for (const {app, components, damaged: damagedCount, environment, error, lastPassedDrill} of environments) {
    const base = {app, env: environment}
    up.samples.push({labels: base, value: error === undefined ? 1 : 0})
    if (error !== undefined) continue
    damaged.samples.push({labels: base, value: damagedCount ?? 0})
    for (const component of ['database', 'media'] as const) {
      const labels = {...base, component}
      const newest = components?.[component]
      if (newest !== undefined) {
        success.samples.push({labels, value: Date.parse(newest.completedAt) / 1000})
        duration.samples.push({labels, value: newest.durationSeconds})
        size.samples.push({labels, value: newest.bytes})
      }

      if (lastPassedDrill?.components.includes(component)) {
        drill.samples.push({labels, value: Date.parse(lastPassedDrill.endedAt) / 1000})
      }
    }
  }

  return `${[up, success, duration, size, drill, damaged].map((each) => renderFamily(each)).join('')}`
}

function family(name: string, help: string): Family {
  return {help, name, samples: []}
}

function renderFamily({help, name, samples}: Family): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`]
  for (const {labels, value} of samples) {
    const pairs = Object.entries(labels).map(([label, text]) => `${label}="${escapeLabel(text)}"`)
    lines.push(`${name}{${pairs.join(',')}} ${formatValue(value)}`)
  }

  return `${lines.join('\n')}\n`
}

/** Label values escape backslash, double quote and line feed, and nothing else. */
function escapeLabel(text: string): string {
  return text
    .replaceAll('\\', '\\\\')
    .replaceAll('"', String.raw`\"`)
    .replaceAll('\n', String.raw`\n`)
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf'
  return String(value)
}

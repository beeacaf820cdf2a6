import {BackupError} from '../errors.js'

/**
 * The error of a `database` or `media` setting that names a variable not set here, raised by what
 * needs that part (requireParts in load.ts).
 */
export interface UnsetVariables {
  database?: BackupError
  media?: BackupError
}

/** The parts a command may not need, whose variables are asked for only by what needs them. */
const PARTS = ['database', 'media'] as const

/**
 * Interpolates the top-level settings and the selected environment only: acting on `test` must not
 * require the variables that only `live` uses. A `database` or `media` setting whose variable is unset
 * is left out, with its error, for the commands that need it (requireParts).
 */
export function interpolateSelected(
  raw: unknown,
  options: {environment?: string; variables: NodeJS.ProcessEnv},
  file: string,
): {config: unknown; unsetVariables: UnsetVariables} {
  const unsetVariables: UnsetVariables = {}
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return {config: raw, unsetVariables}
  const {environments, ...top} = raw as Record<string, unknown>
  const settings = interpolate(top, options.variables, [], file) as Record<string, unknown>
  if (environments === null || typeof environments !== 'object' || Array.isArray(environments)) {
    return {config: {...settings, environments}, unsetVariables}
  }

  const names = Object.keys(environments)
  const selected =
    options.environment ??
    (typeof settings.defaultEnvironment === 'string' ? settings.defaultEnvironment : undefined) ??
    (names.length === 1 ? names[0] : undefined)
  const interpolated = (name: string, value: unknown): unknown => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return interpolate(value, options.variables, ['environments', name], file)
    }

    const result: Record<string, unknown> = {}
    for (const [key, setting] of Object.entries(value)) {
      try {
        result[key] = interpolate(setting, options.variables, ['environments', name, key], file)
      } catch (error) {
        const part = PARTS.find((candidate) => candidate === key)
        if (part === undefined || !(error instanceof BackupError) || error.code !== 'CONFIG_VARIABLE_UNSET') throw error
        unsetVariables[part] = error
      }
    }

    return result
  }

  return {
    config: {
      ...settings,
      environments: Object.fromEntries(
        Object.entries(environments).map(([name, value]) => [
          name,
          name === selected ? interpolated(name, value) : value,
        ]),
      ),
    },
    unsetVariables,
  }
}

/** Replaces `${VAR}` in every string of the config; an unset variable names the JSON path that needs it. */
function interpolate(value: unknown, variables: NodeJS.ProcessEnv, path: (number | string)[], file: string): unknown {
  if (typeof value === 'string') {
    return value.replaceAll(/\$\{([A-Za-z_]\w*)\}/g, (_match, variable: string) => {
      const replacement = variables[variable]
      if (replacement === undefined || replacement === '') {
        throw new BackupError(
          'CONFIG_VARIABLE_UNSET',
          `${file} at ${formatPath(path)} uses \${${variable}}, which is not set.`,
          {suggestion: `Set the environment variable ${variable}, or change the config.`},
        )
      }

      return replacement
    })
  }

  if (Array.isArray(value)) return value.map((item, index) => interpolate(item, variables, [...path, index], file))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolate(item, variables, [...path, key], file)]),
    )
  }

  return value
}

export function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)'
  return path
    .map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`))
    .join('')
}

import {Errors, Hook, Interfaces} from '@oclif/core'

import {nearestName} from '../../cli/nearest.js'
import {BackupError} from '../../errors.js'
import {SERVICE_THREAD_COMMANDS} from '../../service-thread/commands.js'

const TOPIC = 'app:backup'

/**
 * Command lines under `app backup` that name no command, which oclif would answer in its own way:
 * - flags before the command: `divio app backup -e live schedule run` reads to oclif as the topic
 *   `app backup` followed by flags, and a topic followed by anything shows the topic's help and exits
 *   0. In a cron line that never takes a backup and never reports a failure;
 * - a misspelt command (`app backup craete`), which oclif reports in a format of its own.
 *
 * Both become usage errors (exit 2) in the contract of every other error: `Error:` and `Try this:`, or
 * one JSON error with --json, naming the command meant in the host's spelling. The hook runs in the
 * host's process before the command is looked up. It acts only on this plugin's topics: `divio app
 * backup` alone, and every `--help`, keep oclif's help.
 */
const hook: Hook.Init = async function ({argv, config, id}) {
  if (id === undefined || !(id === TOPIC || id.startsWith(`${TOPIC}:`))) return
  const help = argv.some((argument) => argument === '--help' || argument === '-h')
  if (config.findCommand(id) !== undefined) {
    // Loaded only here: the hook runs for every command of the host.
    if (SERVICE_THREAD_COMMANDS.has(id) && !help)
      (await import('../../service-thread/run.js')).startServiceThreadAhead()
    return
  }

  if (help) return
  if (config.findTopic(id) === undefined) fail(unknownCommand(config, id), argv)
  if (argv.length > 0) fail(misplacedFlags(config, id, argv), argv)
}

function misplacedFlags(config: Interfaces.Config, id: string, argv: string[]): BackupError {
  const topic = id.split(':')
  const meant = commandWithin(argv, topic, (candidate) => config.findCommand(candidate) !== undefined)
  const given = [config.bin, spell(config, topic), ...argv].join(' ')
  return meant === undefined
    ? new BackupError('USAGE', `\`${given}\` names no command.`, {
        suggestion: `Run \`${config.bin} ${spell(config, topic)} --help\` for the commands; flags go after the command.`,
      })
    : new BackupError('USAGE', `Flags go after the command: \`${given}\` ran nothing.`, {
        suggestion: `Run \`${[config.bin, spell(config, meant.command), ...meant.rest].join(' ')}\`.`,
      })
}

/** `app:backup:craete`: the deepest topic it is under, and the command there nearest to the rest. */
function unknownCommand(config: Interfaces.Config, id: string): BackupError {
  const parts = id.split(':')
  let depth = parts.length - 1
  while (depth > 2 && config.findTopic(parts.slice(0, depth).join(':')) === undefined) depth--
  const topic = parts.slice(0, depth)
  const prefix = `${topic.join(':')}:`
  const commands = config.commandIDs.filter((command) => command.startsWith(prefix))
  const typed = parts.slice(depth).join(':')
  const nearest = nearestName(
    typed,
    commands.map((command) => command.slice(prefix.length)),
  )
  const help = `Run \`${config.bin} ${spell(config, topic)} --help\` for the commands.`
  return new BackupError('USAGE', `Unknown command: \`${config.bin} ${spell(config, parts)}\`.`, {
    suggestion: nearest
      ? `Did you mean \`${config.bin} ${spell(config, [...topic, ...nearest.split(':')])}\`? ${help}`
      : help,
  })
}

function spell(config: Interfaces.Config, parts: readonly string[]): string {
  return parts.join(config.topicSeparator)
}

/** Reports `error` as every command does, and stops before oclif looks the command up. */
function fail(error: BackupError, argv: readonly string[]): never {
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({error: error.toJSON()}, null, 2)}\n`)
  } else {
    process.stderr.write(`Error: ${error.message}\nTry this: ${error.suggestion}\n`)
  }

  const stop = new Errors.ExitError(error.exitCode)
  // Reported above: oclif must add nothing (see BackupCommand.catch).
  stop.skipOclifErrorHandling = true
  throw stop
}

/**
 * The command that the words among `argv` name under `topic`, the longest first (`schedule run` over
 * `schedule`), with the other arguments in the order given. Words are the arguments that are not
 * flags; a flag's value (`-e live`) is one too, and simply names no command.
 */
export function commandWithin(
  argv: readonly string[],
  topic: readonly string[],
  isCommand: (id: string) => boolean,
): undefined | {command: string[]; rest: string[]} {
  const words = argv.map((argument, index) => ({argument, index})).filter(({argument}) => !argument.startsWith('-'))
  for (let start = 0; start < words.length; start++) {
    for (let end = words.length; end > start; end--) {
      const run = words.slice(start, end)
      // Only consecutive words: `-e live schedule run` holds `schedule run`, never `live … run`.
      if (run.at(-1)!.index - run[0].index !== run.length - 1) continue
      const command = [...topic, ...run.map(({argument}) => argument)]
      if (!isCommand(command.join(':'))) continue
      const used = new Set(run.map(({index}) => index))
      return {command, rest: argv.filter((_argument, index) => !used.has(index))}
    }
  }

  return undefined
}

export default hook

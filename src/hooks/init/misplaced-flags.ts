import {Errors, Hook} from '@oclif/core'

import {BackupError} from '../../errors.js'

const TOPIC = 'app:backup'

/**
 * `divio app backup -e live schedule run` reads to oclif as the topic `app backup` followed by flags,
 * and a topic followed by anything shows the topic's help and exits 0. In a cron line that never takes
 * a backup and never reports a failure. This hook, which oclif runs in the host's process before it
 * looks the command up, turns it into a usage error (exit 2) that names the command meant and spells
 * it with the flags after it.
 *
 * It acts only on the topics of this plugin, and only when arguments follow them: `divio app backup`
 * alone, and every `--help`, keep oclif's help.
 */
const hook: Hook.Init = async function ({argv, config, id}) {
  if (id === undefined || !(id === TOPIC || id.startsWith(`${TOPIC}:`))) return
  if (config.findCommand(id) !== undefined || argv.length === 0) return
  if (argv.some((argument) => argument === '--help' || argument === '-h')) return

  const topic = id.split(':')
  const meant = commandWithin(argv, topic, (candidate) => config.findCommand(candidate) !== undefined)
  const spell = (parts: string[]) => parts.join(config.topicSeparator)
  const given = [config.bin, spell(topic), ...argv].join(' ')
  const error =
    meant === undefined
      ? new BackupError('USAGE', `\`${given}\` names no command.`, {
          suggestion: `Run \`${config.bin} ${spell(topic)} --help\` for the commands; flags go after the command.`,
        })
      : new BackupError('USAGE', `Flags go after the command: \`${given}\` ran nothing.`, {
          suggestion: `Run \`${[config.bin, spell(meant.command), ...meant.rest].join(' ')}\`.`,
        })
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify({error: error.toJSON()}, null, 2)}\n`)
  } else {
    process.stderr.write(`Error: ${error.message}\nTry this: ${error.suggestion}\n`)
  }

  const exit = new Errors.ExitError(error.exitCode)
  // Reported above: oclif must add nothing (see BackupCommand.catch).
  exit.skipOclifErrorHandling = true
  throw exit
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

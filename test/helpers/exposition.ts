import {expect} from 'chai'

export interface Sample {
  labels: Record<string, string>
  name: string
  value: number
}

/**
 * A strict reader of Prometheus's text exposition format (0.0.4), for the shapes `status` writes:
 * every family has HELP then TYPE before its samples, names and labels are valid, each series is
 * unique, and values are numbers. promtool checks the same, and more, where it is installed.
 */
export function parseExposition(text: string): Sample[] {
  expect(text.endsWith('\n'), 'ends with a line feed').to.equal(true)
  const samples: Sample[] = []
  const typed = new Map<string, string>()
  const helped = new Set<string>()
  const series = new Set<string>()
  for (const line of text.slice(0, -1).split('\n')) {
    const help = /^# HELP ([a-zA-Z_:][\w:]*) \S.*$/.exec(line)
    const type = /^# TYPE ([a-zA-Z_:][\w:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (help) {
      expect(helped.has(help[1]), `a second HELP for ${help[1]}`).to.equal(false)
      helped.add(help[1])
      continue
    }

    if (type) {
      expect(helped.has(type[1]), `TYPE of ${type[1]} after its HELP`).to.equal(true)
      typed.set(type[1], type[2])
      continue
    }

    const sample = /^([a-zA-Z_:][\w:]*)\{((?:[a-zA-Z_]\w*="(?:[^"\\\n]|\\[\\"n])*",?)*)\} (\S+)$/.exec(line)
    expect(sample, `a sample line: ${JSON.stringify(line)}`).to.not.equal(null)
    const [, name, labelText, valueText] = sample!
    expect(typed.has(name), `${name} has a TYPE before its samples`).to.equal(true)
    if (typed.get(name) !== 'counter') expect(name, 'only counters end in _total').to.not.match(/_total$/)
    const labels = Object.fromEntries(
      [...labelText.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map(([, label, value]) => [label, value]),
    )
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    expect(series.has(key), `one sample per series: ${key}`).to.equal(false)
    series.add(key)
    const value = Number(valueText)
    expect(Number.isNaN(value) && valueText !== 'NaN', `a number: ${valueText}`).to.equal(false)
    samples.push({labels, name, value})
  }

  return samples
}

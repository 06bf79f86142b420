/** Test helper: reads a systemd unit file into sections of key → values (keys may repeat). */
import { readFileSync } from 'node:fs';

/** A parsed unit: section name → directive name → every value given, in order. */
export type UnitFile = Map<string, Map<string, string[]>>;

/** Parses the INI-like unit syntax: comments, sections, `Key=value`, repeated keys. */
export function readUnitFile(path: string): UnitFile {
  const unit: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of readFileSync(path, 'utf8').split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header !== null) {
      section = new Map();
      unit.set(header[1] as string, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (section === undefined || eq <= 0) throw new Error(`${path}: unexpected line ${JSON.stringify(line)}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

/** The last value of a directive (systemd's rule for single-valued keys), or undefined. */
export function directive(unit: UnitFile, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/** Reading the audit lines a test server wrote. */

/** An `x509svid.issue` audit record, as the tests read it. */
export interface X509IssueRecord {
  readonly action: string;
  readonly result: string;
  readonly entryId?: string;
  readonly serial?: string;
  readonly reason?: string;
}

/** The `x509svid.issue` records in audit text: a file's text, or the lines (or multi-line writes) of a memory sink. */
export function x509IssueRecords(text: string | readonly string[]): X509IssueRecord[] {
  return (typeof text === 'string' ? [text] : text)
    .flatMap((chunk) => chunk.split('\n'))
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as X509IssueRecord)
    .filter((a) => a.action === 'x509svid.issue');
}

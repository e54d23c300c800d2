// One hand-made source mutation: a single small edit that breaks one README promise, and the tests
// that must fail when it is applied. tools/mutations/run.ts re-applies them in a scratch copy.

export interface Mutation {
  /** Short, unique slug (kebab-case): names the mutation in the table and on the command line. */
  id: string;
  /** The promise it breaks, in the README's or docs/guarantees.md's words. */
  promise: string;
  /** Repo path of the file edited. */
  file: string;
  /** Exact text replaced: must occur exactly once in `file` (a stale mutation fails the run). */
  find: string;
  replace: string;
  /** Test files (repo paths) run against the mutated copy; at least one test must fail. */
  killers: string[];
  /** Optional `bun test -t` pattern narrowing the killers to the tests named in the table. */
  testNamePattern?: string;
  /** What failed when it was last applied: the assertion or message a reader will see. */
  observed: string;
}

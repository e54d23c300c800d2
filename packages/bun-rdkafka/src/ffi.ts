// The raw C APIs as seen through bun:ffi: library lookup and the symbol tables of librdkafka and
// of the C library (memcpy; pipe2 and close for queue wake-ups). No logic: the C helpers live in
// native.ts, and the safe classes (handle lifetimes, close()) in producer.ts, consumer.ts and admin.ts.
// Reference: /usr/include/librdkafka/rdkafka.h (Debian's librdkafka-dev).
import { type FFIFunction, FFIType, dlopen } from "bun:ffi";
import { KafkaError, LibraryMismatchError, LibraryNotFoundError } from "./errors.ts";
import { BUILT_AGAINST } from "./layout.ts";

const symbols = {
  rd_kafka_version: { args: [], returns: "i32" },
  rd_kafka_version_str: { args: [], returns: "cstring" },
  rd_kafka_err2str: { args: ["i32"], returns: "cstring" },
  rd_kafka_err2name: { args: ["i32"], returns: "cstring" },

  rd_kafka_conf_new: { args: [], returns: "ptr" },
  rd_kafka_conf_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_conf_set: { args: ["ptr", "ptr", "ptr", "ptr", "usize"], returns: "i32" },
  rd_kafka_conf_set_events: { args: ["ptr", "i32"], returns: "void" },

  rd_kafka_new: { args: ["i32", "ptr", "ptr", "usize"], returns: "ptr" },
  rd_kafka_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_fatal_error: { args: ["ptr", "ptr", "usize"], returns: "i32" },
  rd_kafka_controllerid: { args: ["ptr", "i32"], returns: "i32" },
  rd_kafka_outq_len: { args: ["ptr"], returns: "i32" },
  rd_kafka_purge: { args: ["ptr", "i32"], returns: "i32" },
  rd_kafka_metadata: { args: ["ptr", "i32", "ptr", "ptr", "i32"], returns: "i32" },
  rd_kafka_metadata_destroy: { args: ["ptr"], returns: "void" },

  rd_kafka_topic_new: { args: ["ptr", "ptr", "ptr"], returns: "ptr" },
  rd_kafka_topic_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_topic_name: { args: ["ptr"], returns: "cstring" },

  rd_kafka_queue_new: { args: ["ptr"], returns: "ptr" },
  rd_kafka_queue_get_main: { args: ["ptr"], returns: "ptr" },
  rd_kafka_queue_get_consumer: { args: ["ptr"], returns: "ptr" },
  rd_kafka_queue_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_queue_poll: { args: ["ptr", "i32"], returns: "ptr" },
  rd_kafka_queue_io_event_enable: { args: ["ptr", "i32", "ptr", "usize"], returns: "void" },

  rd_kafka_event_type: { args: ["ptr"], returns: "i32" },
  rd_kafka_event_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_event_message_next: { args: ["ptr"], returns: "ptr" },
  rd_kafka_event_message_array: { args: ["ptr", "ptr", "usize"], returns: "usize" },
  rd_kafka_event_error: { args: ["ptr"], returns: "i32" },
  rd_kafka_event_error_string: { args: ["ptr"], returns: "cstring" },
  rd_kafka_event_error_is_fatal: { args: ["ptr"], returns: "i32" },
  rd_kafka_event_stats: { args: ["ptr"], returns: "cstring" },
  rd_kafka_event_topic_partition_list: { args: ["ptr"], returns: "ptr" },

  rd_kafka_produceva: { args: ["ptr", "ptr", "usize"], returns: "ptr" },
  rd_kafka_error_code: { args: ["ptr"], returns: "i32" },
  rd_kafka_error_string: { args: ["ptr"], returns: "cstring" },
  rd_kafka_error_is_fatal: { args: ["ptr"], returns: "i32" },
  rd_kafka_error_is_retriable: { args: ["ptr"], returns: "i32" },
  rd_kafka_error_destroy: { args: ["ptr"], returns: "void" },

  rd_kafka_message_headers: { args: ["ptr", "ptr"], returns: "i32" },
  rd_kafka_message_timestamp: { args: ["ptr", "ptr"], returns: FFIType.i64_fast },
  rd_kafka_header_cnt: { args: ["ptr"], returns: "usize" },
  rd_kafka_header_get_all: { args: ["ptr", "usize", "ptr", "ptr", "ptr"], returns: "i32" },

  rd_kafka_topic_partition_list_new: { args: ["i32"], returns: "ptr" },
  rd_kafka_topic_partition_list_add: { args: ["ptr", "ptr", "i32"], returns: "ptr" },
  rd_kafka_topic_partition_list_destroy: { args: ["ptr"], returns: "void" },

  rd_kafka_subscribe: { args: ["ptr", "ptr"], returns: "i32" },
  rd_kafka_poll_set_consumer: { args: ["ptr"], returns: "i32" },
  rd_kafka_assign: { args: ["ptr", "ptr"], returns: "i32" },
  rd_kafka_unsubscribe: { args: ["ptr"], returns: "i32" },
  rd_kafka_incremental_assign: { args: ["ptr", "ptr"], returns: "ptr" },
  rd_kafka_incremental_unassign: { args: ["ptr", "ptr"], returns: "ptr" },
  rd_kafka_rebalance_protocol: { args: ["ptr"], returns: "cstring" },
  rd_kafka_commit_queue: { args: ["ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  rd_kafka_committed: { args: ["ptr", "ptr", "i32"], returns: "i32" },
  rd_kafka_pause_partitions: { args: ["ptr", "ptr"], returns: "i32" },
  rd_kafka_resume_partitions: { args: ["ptr", "ptr"], returns: "i32" },
  rd_kafka_query_watermark_offsets: { args: ["ptr", "ptr", "i32", "ptr", "ptr", "i32"], returns: "i32" },
  rd_kafka_consumer_close_queue: { args: ["ptr", "ptr"], returns: "ptr" },
  rd_kafka_consumer_closed: { args: ["ptr"], returns: "i32" },

  rd_kafka_NewTopic_new: { args: ["ptr", "i32", "i32", "ptr", "usize"], returns: "ptr" },
  rd_kafka_NewTopic_set_config: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  rd_kafka_NewTopic_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_CreateTopics: { args: ["ptr", "ptr", "usize", "ptr", "ptr"], returns: "void" },
  rd_kafka_event_CreateTopics_result: { args: ["ptr"], returns: "ptr" },
  rd_kafka_CreateTopics_result_topics: { args: ["ptr", "ptr"], returns: "ptr" },
  rd_kafka_DeleteTopic_new: { args: ["ptr"], returns: "ptr" },
  rd_kafka_DeleteTopic_destroy: { args: ["ptr"], returns: "void" },
  rd_kafka_DeleteTopics: { args: ["ptr", "ptr", "usize", "ptr", "ptr"], returns: "void" },
  rd_kafka_event_DeleteTopics_result: { args: ["ptr"], returns: "ptr" },
  rd_kafka_DeleteTopics_result_topics: { args: ["ptr", "ptr"], returns: "ptr" },
  rd_kafka_topic_result_error: { args: ["ptr"], returns: "i32" },
  rd_kafka_topic_result_error_string: { args: ["ptr"], returns: "cstring" },
  rd_kafka_topic_result_name: { args: ["ptr"], returns: "cstring" },
} as const satisfies Record<string, FFIFunction>;

/** Where we look for librdkafka when LIBRDKAFKA_PATH is not set. */
export const LIBRARY_CANDIDATES = [
  "librdkafka.so.1", // Debian/Ubuntu librdkafka1
  "librdkafka.so",
  "/opt/homebrew/lib/librdkafka.dylib",
  "/usr/local/lib/librdkafka.dylib",
  "librdkafka.dylib",
];

/** Opens the first library of `candidates` that loads; `notFound` turns the attempts into the error. */
function openFirst<S extends Record<string, FFIFunction>>(
  candidates: readonly string[],
  table: S,
  notFound: (tried: string[]) => Error,
) {
  const tried: string[] = [];
  for (const path of candidates) {
    try {
      return dlopen(path, table);
    } catch (error) {
      tried.push(`${path}: ${(error as Error).message}`);
    }
  }
  throw notFound(tried);
}

/** "2.0.2" from librdkafka's 0xMMmmrrxx version integer. */
export function versionString(hex: number): string {
  return `${(hex >>> 24) & 0xff}.${(hex >>> 16) & 0xff}.${(hex >>> 8) & 0xff}`;
}

/**
 * Opens librdkafka (LIBRDKAFKA_PATH, else the usual names) and refuses a library of another major
 * version than the one the struct layouts come from: its structs may differ, and reading them
 * with the wrong offsets corrupts memory instead of failing.
 */
export function loadLibrdkafka(path = process.env.LIBRDKAFKA_PATH) {
  const opened = openFirst(path ? [path] : LIBRARY_CANDIDATES, symbols, (tried) => new LibraryNotFoundError(tried));
  const hex = opened.symbols.rd_kafka_version();
  if (hex >>> 24 !== BUILT_AGAINST.hex >>> 24) {
    const found = versionString(hex);
    opened.close();
    throw new LibraryMismatchError(`the librdkafka loaded from ${path ?? "the default library path"}`, [
      `it is ${found}, the binding's struct layouts are from ${BUILT_AGAINST.version} (major version ${BUILT_AGAINST.hex >>> 24});`,
      "install librdkafka 2.x or point LIBRDKAFKA_PATH at one, then run `bunx bun-rdkafka-probe` to check its header",
    ]);
  }
  return opened;
}

// bun-types allow pointers and 64-bit results to come back as bigint; on 64-bit Linux/macOS Bun
// returns pointers as numbers (user-space addresses fit in 52 bits), which is what we rely on.
type WithoutBigint<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Exclude<R, bigint> : T[K];
};

export type Librdkafka = WithoutBigint<ReturnType<typeof loadLibrdkafka>["symbols"]>;

let loaded: Librdkafka | undefined;

// The C library's memcpy: copying a message out of librdkafka's memory in one call is ~8x
// cheaper than wrapping it with toArrayBuffer() and slicing (measured: 0.05 vs 0.43 us per 250 B).
// Its return value (dst) is not needed: declared void, nothing is converted back.
const libcSymbols = {
  memcpy: { args: ["ptr", "ptr", "usize"], returns: "void" },
} as const satisfies Record<string, FFIFunction>;

const LIBC_CANDIDATES = ["libc.so.6", "libSystem.B.dylib"];

type Libc = { memcpy: (dst: number | Uint8Array, src: number, len: number) => unknown };
let loadedLibc: Libc | undefined;

/** The process-wide libc symbols we use, opened on first use. */
export function libc(): Libc {
  loadedLibc ??= openFirst(
    LIBC_CANDIDATES,
    libcSymbols,
    (tried) => new KafkaError("LIBRARY_NOT_FOUND", `the C library could not be opened (${tried.join("; ")})`),
  ).symbols as unknown as Libc;
  return loadedLibc;
}

// A pipe for queue wake-ups (rd_kafka_queue_io_event_enable writes to it). pipe2 is Linux's (it
// sets O_NONBLOCK atomically); where it is missing, callers fall back to timed polling.
const pipeSymbols = {
  pipe2: { args: ["ptr", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
} as const satisfies Record<string, FFIFunction>;

type PipeCalls = { pipe2: (fds: Int32Array, flags: number) => number; close: (fd: number) => number };
let loadedPipe: PipeCalls | null | undefined;

/** pipe2 and close from the C library, or null where there is no pipe2 (macOS). */
export function pipeCalls(): PipeCalls | null {
  if (loadedPipe === undefined) {
    try {
      loadedPipe = openFirst(LIBC_CANDIDATES, pipeSymbols, () => new Error("no pipe2")).symbols as unknown as PipeCalls;
    } catch {
      loadedPipe = null;
    }
  }
  return loadedPipe;
}

/** The process-wide librdkafka symbol table, opened on first use. */
export function lib(): Librdkafka {
  loaded ??= loadLibrdkafka().symbols as unknown as Librdkafka;
  return loaded;
}

// The one classification of database errors (shared/db-errors.ts) against its header's table:
// data (SQLSTATE classes 22 and 23, whole codes only), transient (each listed SQLSTATE, client code
// and pgbouncer condition), fatal (everything else, non-errors and client deadlines included);
// the SQLSTATE helpers; the client-side deadline and its message. In-process, for Stryker.
import { describe, expect, test } from "bun:test";
import {
  DbDeadlineError,
  SQLSTATE,
  classifyDbError,
  hasSqlState,
  isDataError,
  isTransientDbError,
  withDeadline,
} from "../../shared/db-errors.ts";

const err = (code: unknown, message = "x") => Object.assign(new Error(message), { code });

describe("classifyDbError", () => {
  test("every transient SQLSTATE and client code of the list", () => {
    for (const code of [
      "40001",
      "40P01",
      "08000",
      "08003",
      "08006",
      "08P01",
      "57014",
      "57P01",
      "57P02",
      "57P03",
      "53300",
      "53400",
      "55P03",
      "CONNECTION_CLOSED",
      "CONNECTION_ENDED",
      "CONNECTION_DESTROYED",
      "CONNECT_TIMEOUT",
      "ECONNREFUSED",
      "ECONNRESET",
      "EPIPE",
      "ETIMEDOUT",
    ])
      expect({ code, class: classifyDbError(err(code)) }).toEqual({ code, class: "transient" });
  });

  test("pgbouncer's own conditions, by message, in any case", () => {
    for (const message of [
      "query_wait_timeout",
      "ERROR: query_timeout",
      "server conn crashed?",
      "no more connections allowed (max_client_conn)",
      "pgbouncer cannot connect to server",
      "server login has been failing, try again later (server_login_retry)",
      "database is paused",
      "CLIENT_LOGIN_TIMEOUT",
    ])
      expect({ message, class: classifyDbError(new Error(message)) }).toEqual({ message, class: "transient" });
  });

  test("data: a whole SQLSTATE of class 22 or 23", () => {
    for (const code of ["22000", "22P02", "22008", "23505", "23514"]) expect(classifyDbError(err(code))).toBe("data");
    for (const code of ["2200", "122P02", "22P021", "21000", "24000", "32000"])
      expect({ code, class: classifyDbError(err(code)) }).toEqual({ code, class: "fatal" });
  });

  test("a listed code only as a whole code: a longer one is not transient", () => {
    for (const code of ["140001", "400011", "X57014", "57P011", "ECONNRESET2"])
      expect({ code, class: classifyDbError(err(code)) }).toEqual({ code, class: "fatal" });
  });

  test("fatal: anything else, a client deadline, a code that is not a string, a thrown non-Error", () => {
    expect(classifyDbError(err("42P01"))).toBe("fatal");
    expect(classifyDbError(new DbDeadlineError("write batch", 10))).toBe("fatal");
    expect(classifyDbError(err(22001))).toBe("fatal");
    expect(classifyDbError(err(40001))).toBe("fatal");
    expect(classifyDbError({ code: "40001", message: "serialization" })).toBe("fatal");
    expect(classifyDbError({ code: "22P02", message: "bad" })).toBe("fatal");
    expect(classifyDbError(null)).toBe("fatal");
    expect(classifyDbError("08006")).toBe("fatal");
  });

  test("isDataError and isTransientDbError follow it", () => {
    expect([isDataError(err("22P02")), isDataError(err("40001")), isDataError(err("42P01"))]).toEqual([
      true,
      false,
      false,
    ]);
    expect([isTransientDbError(err("22P02")), isTransientDbError(err("40001"))]).toEqual([false, true]);
  });
});

describe("SQLSTATE helpers", () => {
  test("hasSqlState compares the whole code; anything without a string code has none", () => {
    expect(hasSqlState(err("23514"), SQLSTATE.check_violation)).toBe(true);
    expect(hasSqlState(err("23505"), SQLSTATE.check_violation)).toBe(false);
    expect(hasSqlState(err("42P01"), SQLSTATE.undefined_table)).toBe(true);
    expect(hasSqlState(err(23514), SQLSTATE.check_violation)).toBe(false);
    expect(hasSqlState(null, SQLSTATE.lock_not_available)).toBe(false);
    expect(hasSqlState(undefined, SQLSTATE.lock_not_available)).toBe(false);
    expect(hasSqlState(err("23505"), SQLSTATE.unique_violation)).toBe(true);
    expect(SQLSTATE).toEqual({
      undefined_table: "42P01",
      check_violation: "23514",
      unique_violation: "23505",
      lock_not_available: "55P03",
    });
  });
});

describe("withDeadline", () => {
  test("past its deadline: DbDeadlineError naming the call and the deadline", async () => {
    const error = await withDeadline("write batch", 20, new Promise<never>(() => {})).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DbDeadlineError);
    expect(error).toMatchObject({
      name: "DbDeadlineError",
      message: "write batch: no answer from the database within 20 ms; exiting so the connection is discarded",
    });
  });

  test("`late` makes the caller's own error instead", async () => {
    const late = (what: string, ms: number) => new Error(`${what} late by ${ms}`);
    await expect(withDeadline("refresh", 10, new Promise<never>(() => {}), late)).rejects.toThrow("refresh late by 10");
  });

  test("settled in time: its value or its error, and the deadline is cancelled", async () => {
    let lateCalls = 0;
    const late = () => {
      lateCalls++;
      return new Error("late");
    };
    expect(await withDeadline("ok", 20, Promise.resolve(7), late)).toBe(7);
    await expect(withDeadline("fails", 20, Promise.reject(new Error("refused")), late)).rejects.toThrow("refused");
    await Bun.sleep(40);
    expect(lateCalls).toBe(0);
  });
});

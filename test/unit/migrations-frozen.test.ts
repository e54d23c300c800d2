// A migration, once shipped, is never edited: every deployment that applied it recorded its
// checksum, and sql/migrate.ts refuses to run while a file differs from it ("applied migrations
// are never edited: add a new one"). A fresh database cannot see such an edit, so this test pins
// each shipped file's checksum, the one migrate.ts computes. A new migration adds its line here;
// an existing line never changes (not even for a comment: a stale path in one is history).
//
// Mutation checked: a comment edited in 0006_retention.sql (a path renamed in the scripts/ split),
// which made every deployed database refuse `migrate`.
import { expect, test } from "bun:test";
import { readMigrations } from "../../sql/migrate.ts";

const SHIPPED: Record<string, string> = {
  "1_scan_events": "40c15834839c7e37917963a47e7c7cbc93f12bf5312030aece216e90ea5d83b0",
  "2_scan_counts_fillfactor": "fcde512ccf1fb10eca1a41b9f2a9b2dafc913692ba512590fef82219b2f794c4",
  "3_partition_days": "4d09a69085f27cc8b26b5f6fc54b04ebe42a7dade5474e241f4c517c0bdf329d",
  "4_dead_letter_replays": "9b7137d50bf4e6c8ee33ab678bfd99ae609e9f94bd966068e2e25baaf8af88d6",
  "5_api_keys": "f1a9b4ff6ebba22e375fcd891921675d63fce15ed7a2dc923c44f1708081938b",
  "6_retention": "25bc6efeb42f3afc6b721a013339965f6156f9a79532c07ac5aa1d3f6cfce316",
  "7_tenant_prefix": "c1ebd55e4afc6a503ad4b7abdd2c7cd100d1dd5d6038530bbaa681a58f2d675a",
  "8_edge_replicas": "87ba84d8db2b999e44db52710b4d35586d754618f96a2d108310d2bd67c1d188",
  "9_roles": "da5968a4c0a9ad0183e6c100127711796d96551df5e297688821f73a55c053dd",
  "10_dead_letter_context": "36b6fccf8c420cd483f43b805e5e37f5c7e545d68de39de0a1f7ac0d5ff87826",
  "11_device_clock": "68f38f9a55dabf4b2b40e89d21d3bfd7a321e8550a8d112edbb560273376e218",
};

test("every shipped migration is byte for byte what deployments applied; new ones are listed", () => {
  const files = Object.fromEntries(readMigrations().map((m) => [`${m.version}_${m.name}`, m.checksum]));
  expect(files).toEqual(SHIPPED);
});

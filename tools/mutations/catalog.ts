// Every hand-made mutation, one list: the areas' files are written by separate hands.
import { mutations as core } from "./catalog/core.ts";
import { mutations as durability } from "./catalog/durability.ts";
import { mutations as edge } from "./catalog/edge.ts";
import { mutations as faults } from "./catalog/faults.ts";
import { mutations as hosts } from "./catalog/hosts.ts";
import { mutations as scanner } from "./catalog/scanner.ts";
import { mutations as sdk } from "./catalog/sdk.ts";
import type { Mutation } from "./types.ts";

export const catalog: Mutation[] = [...core, ...durability, ...faults, ...edge, ...scanner, ...sdk, ...hosts];

// Hand-made mutations: see tools/mutations/types.ts.
import type { Mutation } from "../types.ts";

export const mutations: Mutation[] = [];

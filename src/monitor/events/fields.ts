/** Field types shared by the provider formats. */
import { z } from 'zod';

/** A string stored as it is. */
export const storedText = z.string();

/** An ISO-8601 timestamp. */
export const timestamp = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 timestamp');

/** An object size in bytes: a non-negative integer, or the same as a string of digits (Event Grid). */
export const size = z.union([z.number().int().min(0), z.string().regex(/^\d{1,18}$/).transform(Number)]);

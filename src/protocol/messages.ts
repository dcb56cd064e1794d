import { z } from 'zod';
import type { TextBlockParam, ToolResultBlockParam, ToolUseBlockParam } from '@anthropic-ai/sdk/resources/messages';

/**
 * Protocol v1: every message between a runner and a control plane, written once
 * as a zod schema. Both ends import these. Each message carries `v: 1`, a `type`
 * and a message `id`; unknown keys are refused (strict envelope).
 */
export const PROTOCOL_VERSION = 1;

const id = z.string().min(1).max(200);
const callId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'use 1-128 letters, digits, _ . : or -');

/** Fields every message carries. */
const envelope = {
  v: z.literal(PROTOCOL_VERSION),
  id,
};

/**
 * A request signature (issue 4): Ed25519 over the canonical encoding of the
 * message with `sig` removed, by the control plane's key pinned at pairing.
 */
export const SignatureSchema = z
  .object({
    ts: z.number().int().describe('milliseconds since the epoch when signed'),
    nonce: z.string().min(16).max(64).describe('random, never reused'),
    runnerId: id.describe('the runner this message is for'),
    value: z.string().min(1).describe('base64 Ed25519 signature'),
  })
  .strict();
export type Signature = z.infer<typeof SignatureSchema>;

// ---- Messages API shapes ----------------------------------------------------------

export const TextBlockSchema = z.object({ type: z.literal('text'), text: z.string() }).strict();
export type TextBlock = z.infer<typeof TextBlockSchema>;

/** `tool_result` content: a string or text blocks (the Messages API shape). */
export const ToolResultContentSchema = z.union([z.string(), z.array(TextBlockSchema)]);
export type ToolResultContent = z.infer<typeof ToolResultContentSchema>;

export const ToolUseSchema = z
  .object({
    type: z.literal('tool_use'),
    id: callId,
    name: z.string().min(1).max(128),
    input: z.record(z.string(), z.unknown()),
  })
  .strict();
export type ToolUse = z.infer<typeof ToolUseSchema>;

export const ToolResultSchema = z
  .object({
    type: z.literal('tool_result'),
    tool_use_id: callId,
    content: ToolResultContentSchema,
    is_error: z.boolean(),
  })
  .strict();
export type ToolResult = z.infer<typeof ToolResultSchema>;

// The schemas must stay assignable to the SDK's own types, so that a Claude
// agent loop can pass blocks through unchanged. These lines fail to compile if not.
type Assert<T extends true> = T;
export type _ToolUseFits = Assert<ToolUse extends ToolUseBlockParam ? true : false>;
export type _ToolResultFits = Assert<ToolResult extends ToolResultBlockParam ? true : false>;
export type _TextFits = Assert<TextBlock extends TextBlockParam ? true : false>;

export const CallStatusSchema = z.enum(['completed', 'failed', 'cancelled', 'timed_out']);
export type CallStatus = z.infer<typeof CallStatusSchema>;

export const DriverNameSchema = z.enum(['isolate', 'bwrap', 'docker']);

export const LimitsSchema = z
  .object({
    wallTimeMs: z.number().int().positive().optional(),
    memoryBytes: z.number().int().positive().optional(),
    maxProcesses: z.number().int().positive().optional(),
    outputBytes: z.number().int().positive().optional(),
    workspaceBytes: z.number().int().positive().optional(),
    cpus: z.number().positive().optional(),
  })
  .strict();
export type LimitsRequest = z.infer<typeof LimitsSchema>;

export const NetworkRequestSchema = z
  .object({
    allow: z.array(z.string().min(1).max(253)).max(100).describe('domains the sandbox may reach'),
  })
  .strict();

/** A sealed credential (issue 4): opened only by the runner it was sealed for. */
export const SealedCredentialSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/),
    sealed: z.string().min(1).describe('base64 crypto_box_seal of the envelope'),
    inject: z.union([
      z.object({ env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/) }).strict(),
      z.object({ file: z.string().min(1).max(4096), mode: z.number().int().min(0).max(0o777).optional() }).strict(),
    ]),
  })
  .strict();
export type SealedCredential = z.infer<typeof SealedCredentialSchema>;

export const VaultReferenceSchema = z
  .object({
    vault: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/),
    inject: SealedCredentialSchema.shape.inject,
  })
  .strict();

/** A protocol error, sent by either end (a bad frame, a refused request, a failed handshake). */
export const ErrorMessageSchema = z
  .object({
    ...envelope,
    type: z.literal('error'),
    code: z.string().max(64),
    message: z.string().max(4000),
    /** The id of the message this answers, when it had one. */
    ref: z.string().max(200).optional(),
  })
  .strict();
export type ErrorMessage = z.infer<typeof ErrorMessageSchema>;

// ---- control plane -> runner --------------------------------------------------------

export const HelloSchema = z
  .object({
    ...envelope,
    type: z.literal('hello'),
    challenge: z.string().min(32).describe('base64 random bytes the runner signs'),
    serverTime: z.number().int(),
  })
  .strict();

export const WelcomeSchema = z
  .object({
    ...envelope,
    type: z.literal('welcome'),
    runnerId: id,
    heartbeatMs: z.number().int().positive(),
    /** Result ids the control plane already holds: the runner drops them from its outbox. */
    known: z.array(callId).max(10_000),
  })
  .strict();

export const ToolCallSchema = z
  .object({
    ...envelope,
    type: z.literal('tool.call'),
    toolUse: ToolUseSchema,
    sessionId: id.optional(),
    timeoutMs: z.number().int().positive().max(24 * 3600_000).optional(),
    traceparent: z.string().max(128).optional(),
    credentials: z.array(z.union([SealedCredentialSchema, VaultReferenceSchema])).max(32).optional(),
    /** Domains the call's fresh sandbox may reach through the egress proxy; a call in a session has the session's. */
    network: NetworkRequestSchema.optional(),
    sig: SignatureSchema.optional(),
  })
  .strict();
export type ToolCall = z.infer<typeof ToolCallSchema>;

export const ToolCancelSchema = z
  .object({ ...envelope, type: z.literal('tool.cancel'), callId, sig: SignatureSchema.optional() })
  .strict();

export const SessionOpenSchema = z
  .object({
    ...envelope,
    type: z.literal('session.open'),
    sessionId: id,
    driver: DriverNameSchema.optional(),
    image: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/).optional(),
    limits: LimitsSchema.optional(),
    network: NetworkRequestSchema.optional(),
    credentials: z.array(z.union([SealedCredentialSchema, VaultReferenceSchema])).max(32).optional(),
    sig: SignatureSchema.optional(),
  })
  .strict();

export const SessionCheckpointSchema = z
  .object({ ...envelope, type: z.literal('session.checkpoint'), sessionId: id, sig: SignatureSchema.optional() })
  .strict();

export const SessionRestoreSchema = z
  .object({
    ...envelope,
    type: z.literal('session.restore'),
    sessionId: id,
    checkpointId: id,
    sig: SignatureSchema.optional(),
  })
  .strict();

export const SessionCloseSchema = z
  .object({ ...envelope, type: z.literal('session.close'), sessionId: id, sig: SignatureSchema.optional() })
  .strict();

/** Acknowledges runner messages (results) by their call ids; they leave the outbox. */
export const AckSchema = z
  .object({ ...envelope, type: z.literal('ack'), ids: z.array(callId).min(1).max(10_000) })
  .strict();

export const ControlMessageSchema = z.discriminatedUnion('type', [
  HelloSchema,
  ErrorMessageSchema,
  WelcomeSchema,
  ToolCallSchema,
  ToolCancelSchema,
  SessionOpenSchema,
  SessionCheckpointSchema,
  SessionRestoreSchema,
  SessionCloseSchema,
  AckSchema,
]);
export type ControlMessage = z.infer<typeof ControlMessageSchema>;

// ---- runner -> control plane --------------------------------------------------------

export const AuthSchema = z
  .object({
    ...envelope,
    type: z.literal('auth'),
    runnerId: id,
    /** base64 Ed25519 signature over `sandbox-runner-auth:v1:<runnerId>:<challenge>`. */
    signature: z.string().min(1),
    version: z.string().max(64),
    capabilities: z
      .object({
        tools: z.array(z.string().max(128)).max(100),
        drivers: z.array(DriverNameSchema),
        maxConcurrentCalls: z.number().int().positive(),
      })
      .strict(),
  })
  .strict();

export const ToolAcceptedSchema = z
  .object({ ...envelope, type: z.literal('tool.accepted'), callId, traceId: z.string().max(64).optional() })
  .strict();

/** An output chunk as JSON; large chunks travel as binary frames instead (binary-frame.ts). */
export const ToolOutputSchema = z
  .object({
    ...envelope,
    type: z.literal('tool.output'),
    callId,
    seq: z.number().int().nonnegative(),
    stream: z.enum(['stdout', 'stderr']),
    data: z.string(),
  })
  .strict();
export type ToolOutput = z.infer<typeof ToolOutputSchema>;

export const ToolResultMessageSchema = z
  .object({
    ...envelope,
    type: z.literal('tool.result'),
    callId,
    status: CallStatusSchema,
    result: ToolResultSchema,
    durationMs: z.number().nonnegative(),
    traceId: z.string().max(64).optional(),
  })
  .strict();
export type ToolResultMessage = z.infer<typeof ToolResultMessageSchema>;

/** One finished span (OpenTelemetry), flattened for the wire. */
export const SpanSchema = z
  .object({
    traceId: z.string().regex(/^[0-9a-f]{32}$/),
    spanId: z.string().regex(/^[0-9a-f]{16}$/),
    parentSpanId: z.string().regex(/^[0-9a-f]{16}$/).optional(),
    name: z.string().max(200),
    startTimeUnixNano: z.string().regex(/^\d+$/),
    endTimeUnixNano: z.string().regex(/^\d+$/),
    status: z.enum(['unset', 'ok', 'error']),
    attributes: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
  })
  .strict();
export type SpanRecord = z.infer<typeof SpanSchema>;

export const SpanMessageSchema = z
  .object({ ...envelope, type: z.literal('span'), spans: z.array(SpanSchema).min(1).max(1000) })
  .strict();

export const AuditCheckpointMessageSchema = z
  .object({
    ...envelope,
    type: z.literal('audit.checkpoint'),
    seq: z.number().int().nonnegative(),
    hash: z.string().regex(/^[0-9a-f]{64}$/),
    signature: z.string().min(1),
    at: z.string(),
  })
  .strict();

export const SessionResultSchema = z
  .object({
    ...envelope,
    type: z.literal('session.result'),
    /** The id of the session.* request this answers. */
    ref: id,
    sessionId: id,
    ok: z.boolean(),
    checkpointId: id.optional(),
    error: z.object({ code: z.string(), message: z.string() }).strict().optional(),
  })
  .strict();


export const RunnerAckSchema = AckSchema;

export const RunnerMessageSchema = z.discriminatedUnion('type', [
  AuthSchema,
  ToolAcceptedSchema,
  ToolOutputSchema,
  ToolResultMessageSchema,
  SpanMessageSchema,
  AuditCheckpointMessageSchema,
  SessionResultSchema,
  ErrorMessageSchema,
  AckSchema,
]);
export type RunnerMessage = z.infer<typeof RunnerMessageSchema>;

type Distribute<U, T> = U extends { type: T } ? U : never;
/** The message of one `type` from a union. */
export type MessageOf<U extends { type: string }, T extends U['type']> = Distribute<U, T>;

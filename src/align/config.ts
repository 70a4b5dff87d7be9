/**
 * The stage-1 settings under the reference's config.json names (../shared/ALIGNX.md), read from a model's
 * config object and overridden by flags, validated with errors that name the field and where it came from.
 *
 *   align_layer                           hidden state k of the contrastive loss: 0 = embeddings, k = after
 *                                         decoder layer k (L = after the final norm); default ⌊L / 2⌋
 *                                         (16 for 32-layer models, as the reference)
 *   contrastive_lambda                    λ_ctr >= 0, default 0.3 (the reference's run script)
 *   contrastive_temperature               τ > 0, default 0.1
 *   language_matching_lambda              λ_lam >= 0, default 0.4
 *   language_matching_intermediate_size   the classifier's width w, a positive integer, default 128
 */

export class AlignConfigError extends Error {
  exitCode = 2;
  constructor(
    message: string,
    /** The config field the error is about (its config.json name). */
    readonly field: string,
  ) {
    super(message);
    this.name = "AlignConfigError";
  }
}

export interface Stage1Config {
  alignLayer: number;
  contrastiveLambda: number;
  contrastiveTemperature: number;
  languageMatchingLambda: number;
  languageMatchingIntermediateSize: number;
}

export const STAGE1_DEFAULTS = {
  contrastive_lambda: 0.3,
  contrastive_temperature: 0.1,
  language_matching_lambda: 0.4,
  language_matching_intermediate_size: 128,
} as const;

/** The config.json names, in the order errors are checked. */
export const STAGE1_FIELDS = [
  "align_layer",
  "contrastive_lambda",
  "contrastive_temperature",
  "language_matching_lambda",
  "language_matching_intermediate_size",
] as const;
export type Stage1Field = (typeof STAGE1_FIELDS)[number];

export interface ReadStage1Options {
  /** The model's decoder layers L (align_layer must be in 0..L). */
  numLayers: number;
  /** Values that win over the config's (flags), by config.json name; undefined entries are ignored. */
  overrides?: Partial<Record<Stage1Field, unknown>>;
  /** Where the config came from, for messages (e.g. the config.json path). Default "config". */
  source?: string;
}

/**
 * The stage-1 settings: each field from `overrides` (named "--flag-name" in errors), else from `config`
 * (named `source`'s field), else its default. Unknown fields of `config` are ignored (it is a model config).
 */
export function readStage1Config(config: Record<string, unknown> | null | undefined, o: ReadStage1Options): Stage1Config {
  const L = o.numLayers;
  if (!Number.isInteger(L) || L < 1) throw new AlignConfigError(`readStage1Config: numLayers must be a positive integer, got ${L}`, "num_hidden_layers");
  const source = o.source ?? "config";
  const value = (field: Stage1Field, dflt: number) => {
    const ov = o.overrides?.[field];
    if (ov !== undefined) return { v: ov, where: `--${field.replaceAll("_", "-")}` };
    if (config && Object.hasOwn(config, field) && config[field] !== undefined && config[field] !== null) return { v: config[field], where: `${source}: ${field}` };
    return { v: dflt as unknown, where: `${field} (default)` };
  };
  const num = (field: Stage1Field, dflt: number, ok: (x: number) => boolean, want: string): number => {
    const { v, where } = value(field, dflt);
    const x = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
    if (typeof x !== "number" || !Number.isFinite(x) || !ok(x))
      throw new AlignConfigError(`${where} must be ${want}, got ${typeof v === "string" ? JSON.stringify(v) : String(v)}`, field);
    return x;
  };
  return {
    alignLayer: num("align_layer", Math.floor(L / 2), (x) => Number.isInteger(x) && x >= 0 && x <= L, `an integer in 0..${L} (the model has ${L} layers; 0 = embeddings)`),
    contrastiveLambda: num("contrastive_lambda", STAGE1_DEFAULTS.contrastive_lambda, (x) => x >= 0, "a number >= 0"),
    contrastiveTemperature: num("contrastive_temperature", STAGE1_DEFAULTS.contrastive_temperature, (x) => x > 0, "a number > 0"),
    languageMatchingLambda: num("language_matching_lambda", STAGE1_DEFAULTS.language_matching_lambda, (x) => x >= 0, "a number >= 0"),
    languageMatchingIntermediateSize: num(
      "language_matching_intermediate_size",
      STAGE1_DEFAULTS.language_matching_intermediate_size,
      (x) => Number.isInteger(x) && x >= 1 && x <= 1 << 20,
      "an integer in 1..1048576",
    ),
  };
}

/** The settings under their config.json names (what a stage-1 checkpoint's config.json gains). */
export function stage1ConfigJson(c: Stage1Config): Record<Stage1Field, number> {
  return {
    align_layer: c.alignLayer,
    contrastive_lambda: c.contrastiveLambda,
    contrastive_temperature: c.contrastiveTemperature,
    language_matching_lambda: c.languageMatchingLambda,
    language_matching_intermediate_size: c.languageMatchingIntermediateSize,
  };
}

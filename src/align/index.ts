// The AlignX layer (above nn and eval): the stage-1 losses (L_NTP + λ_ctr · L_CTR + λ_lam · L_LAM), the
// language-matching classifier, and the stage-1 settings under the reference's config.json names.
export * from "./config.ts";
export * from "./losses.ts";
export * from "./options.ts";
export * from "./checkpoint.ts";
export * from "./trainer.ts";
export * from "./pipeline.ts";

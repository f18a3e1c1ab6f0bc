"""The AD Expert: anomaly maps from patch features (zero-shot CLIP prompts, normal references,
learned sparse prompts), regions, and the defect-type guess."""

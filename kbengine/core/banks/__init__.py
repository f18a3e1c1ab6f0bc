"""Normal-reference memory banks, shared by every layer: patch features and nearest-normal
scores (``memory_bank``), scores read off a patch grid (``scoring``), a knowledge base's banks per
category (``references``) and the region key built from them (``region``)."""

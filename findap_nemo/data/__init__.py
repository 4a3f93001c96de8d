"""FinTrain data: raw CPT text and chat data -> chat template, tokenization, loss masks, packing -> Megatron
indexed datasets and a blend manifest (CPT downsampled to the IT size, finance mixed with general, eval sets
decontaminated)."""

"""What a run hands back: a merged model (`merged.py`) that plain transformers loads. `FastLanguageModel`'s
`save_pretrained_merged` calls it."""

"""What a run hands back: a merged model that plain transformers loads (`merged.py`), GGUF files for llama.cpp
(`gguf_file.py`), uploads to the hub (`hub.py`), and `attnpick export` over them (`trained.py`).
`FastLanguageModel`'s `save_pretrained_merged` / `save_pretrained_gguf` call the same code."""

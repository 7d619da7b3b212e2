"""`attnpick export`: a run of `attnpick train` (or a saved adapter folder) as a model people use: a merged folder
plain transformers loads, or GGUF files for llama.cpp. The same code as `save_pretrained_merged` /
`save_pretrained_gguf`: the base loaded as the adapter was trained (4-bit when the run was), the adapter attached,
then `merged.save_merged` or `gguf_file.save_gguf`. Every input is checked before anything loads; the output
folder appears whole or not at all."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnpick.errors import UsageError
from attnpick.export import adapters, gguf_file, merged
from attnpick.model.options import ModelOptions, check_max_seq_length
from attnpick.util import files
from attnpick.util.options import option

EXPORT_FORMATS = ("merged", "gguf")


@dataclass
class ExportConfig(ModelOptions):
    """Every option of `attnpick export`; `validate()` refuses bad input before anything loads. `model` is the run (or
    adapter) folder; the model options say how to read the base model it names."""

    model: str = option("", "the run folder 'attnpick train --output' wrote, or a saved adapter folder",
                        positional=True)
    output: str = option("", "the folder to write (new or empty)", metavar="DIR", required=True)
    format: str = option("merged", "merged: a 16-bit model folder transformers loads; gguf: files for llama.cpp",
                         choices=EXPORT_FORMATS)
    quantization: str | None = option(None, "with --format gguf: q8_0 (default), f16, bf16, f32, or q4_k_m, "
                                      "q5_k_m, ... (those need llama-cpp-python); with --format merged: 16bit "
                                      "(default) or 4bit", metavar="TYPE")
    max_seq_length: int = option(256, "the context the model is loaded for", metavar="N")

    def validate(self) -> None:
        if not self.model:
            raise UsageError("attnpick export needs the run or adapter folder, e.g. attnpick export runs/demo "
                             "--output merged-model.")
        self.validate_model()
        if self.format not in EXPORT_FORMATS:
            raise UsageError(f"--format must be merged or gguf, got {self.format!r}.")
        check_max_seq_length(self.max_seq_length)
        if self.format == "merged":
            self.save_method()
        else:
            methods = gguf_file.quantization_methods(self.quantization)
            needs = [m for m in methods if m in gguf_file.BY_LLAMA_CPP]
            if needs and importlib.util.find_spec("llama_cpp") is None:
                raise UsageError(f"--quantization {needs[0]} needs llama.cpp's quantizer: "
                                 f"{gguf_file.LLAMA_CPP_INSTALL}. q8_0, f16 and bf16 need nothing more.")
        adapters.locate(self.model, need_adapter=True)
        if not self.output:
            raise UsageError("--output is required: the folder to write the model to.")
        out = merged.check_output(self.output)
        files.check_writable(out.resolve().parent, "--output's parent folder")

    def save_method(self) -> str:
        method = {None: "merged_16bit", "16bit": "merged_16bit", "4bit": "merged_4bit"}.get(self.quantization)
        if method is None:
            raise UsageError(f"--format merged takes --quantization 16bit (default) or 4bit, got "
                             f"{self.quantization!r}; GGUF types go with --format gguf.")
        return method


def export_trained(config: ExportConfig, progress: merged.Progress | None = None) -> tuple[list[Path], Any]:
    """Write the export; returns (what was written, the LoadReport of the model it came from)."""
    config.validate()
    model, tokenizer, report = adapters.load_trained(config.model, config.max_seq_length, trainable=False,
                                                     need_adapter=True, **config.load_keywords())
    out = Path(config.output).expanduser()
    if config.format == "merged":
        merged.save_merged(model, tokenizer, out, config.save_method(), source_folder=report.source_folder or None,
                           progress=progress)
        return [out], report
    with files.disk_full_as_error(out.parent, f"the export {out}"), \
            files.publish_folder(out, replace=out.is_dir()) as staged:  # replace: only an empty folder is there
        paths = gguf_file.save_gguf(model, tokenizer, staged, config.quantization,
                                    source_folder=report.source_folder or None, name=report.model, progress=progress)
    return [out / p.name for p in paths], report

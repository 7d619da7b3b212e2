# An Unsloth Ollama notebook's shape (Llama 3, Alpaca-GPT4): to_sharegpt merging columns with an optional part and
# extending conversations, standardize_sharegpt, the dataset-level apply_chat_template with a custom prompt,
# SFTTrainer with TrainingArguments, generation from the BatchEncoding that transformers 5's apply_chat_template
# returns, then GGUF with its Ollama Modelfile. Written for attnpick's tests and as an example; the only
# attnpick-specific edit is the import lines. Run it in a folder holding alpaca.jsonl.

# %% Load the model in 4-bit
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel
import torch

max_seq_length = 2048
model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/llama-3-8b-bnb-4bit"
    max_seq_length = max_seq_length,
    dtype = None,
    load_in_4bit = True,
)
model = FastLanguageModel.get_peft_model(
    model,
    r = 16,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 16,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = "unsloth",
    random_state = 3407,
    use_rslora = False,
    loftq_config = None,
)

# %% Data: Alpaca columns merged into ShareGPT conversations, three exchanges each
from datasets import load_dataset
dataset = load_dataset("json", data_files = "alpaca.jsonl", split = "train")
print(dataset.column_names)

from attnpick import to_sharegpt  # was: from unsloth import to_sharegpt
dataset = to_sharegpt(
    dataset,
    merged_prompt = "{instruction}[[\nYour input is:\n{input}]]",
    output_column_name = "output",
    conversation_extension = 3,
)
from attnpick import standardize_sharegpt  # was: from unsloth import standardize_sharegpt
dataset = standardize_sharegpt(dataset)

chat_template = """Below are some instructions that describe some tasks. Write responses that appropriately complete each request.

### Instruction:
{INPUT}

### Response:
{OUTPUT}"""

from attnpick import apply_chat_template  # was: from unsloth import apply_chat_template
dataset = apply_chat_template(
    dataset,
    tokenizer = tokenizer,
    chat_template = chat_template,
)
print(dataset[0]["text"][:300])

# %% Train
from trl import SFTTrainer
from transformers import TrainingArguments
from attnpick import is_bfloat16_supported
trainer = SFTTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    dataset_text_field = "text",
    max_seq_length = max_seq_length,
    dataset_num_proc = 2,
    packing = False,
    args = TrainingArguments(
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 4,
        warmup_steps = 5,
        max_steps = 3,
        learning_rate = 2e-4,
        fp16 = not is_bfloat16_supported(),
        bf16 = is_bfloat16_supported(),
        logging_steps = 1,
        optim = "adamw_8bit",
        weight_decay = 0.01,
        lr_scheduler_type = "linear",
        seed = 3407,
        output_dir = "outputs",
        report_to = "none",
    ),
)
trainer_stats = trainer.train()

# %% Inference: generate takes what apply_chat_template(return_tensors="pt") returns
FastLanguageModel.for_inference(model)
messages = [{"role": "user", "content": "Continue the fibonacci sequence! Your input is 1, 1, 2, 3, 5, 8,"}]
input_ids = tokenizer.apply_chat_template(
    messages,
    add_generation_prompt = True,
    return_tensors = "pt",
).to(model.device)

from transformers import TextStreamer
text_streamer = TextStreamer(tokenizer, skip_prompt = True)
_ = model.generate(input_ids, streamer = text_streamer, max_new_tokens = 16, pad_token_id = tokenizer.eos_token_id)

# %% GGUF and the Ollama Modelfile
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
model.save_pretrained_gguf("model", tokenizer)
print(tokenizer._ollama_modelfile)

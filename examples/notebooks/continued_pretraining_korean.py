# An Unsloth continued-pretraining notebook's shape (Mistral v0.3, Korean): LoRA on every projection plus
# embed_tokens and lm_head (trained as full modules), raw Korean text with the eos token appended, UnslothTrainer with
# its own learning rate for the embeddings; then instruction fine-tuning on Korean Alpaca with the same trainer,
# generation, and the save cells. Written for attnpick's tests and as an example; the only attnpick-specific edit is
# the import lines. Run it in a folder holding korean_wiki.jsonl ({"text": ...}) and alpaca.jsonl
# ({"instruction", "input", "output"}).

# %% Load the model in 4-bit
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel
import torch

max_seq_length = 2048
dtype = None
load_in_4bit = True

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/mistral-7b-v0.3"
    max_seq_length = max_seq_length,
    dtype = dtype,
    load_in_4bit = load_in_4bit,
)

# %% LoRA adapters, with embed_tokens and lm_head for continued pretraining
model = FastLanguageModel.get_peft_model(
    model,
    r = 128,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                      "embed_tokens", "lm_head"],
    lora_alpha = 32,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = "unsloth",
    random_state = 3407,
    use_rslora = True,
    loftq_config = None,
)

# %% Data: Korean Wikipedia, each article ending in the eos token
from datasets import load_dataset

EOS_TOKEN = tokenizer.eos_token

def formatting_prompts_func(examples):
    return {"text": [example + EOS_TOKEN for example in examples["text"]]}

dataset = load_dataset("json", data_files = "korean_wiki.jsonl", split = "train")
dataset = dataset.map(formatting_prompts_func, batched = True)
print(dataset[0]["text"][:100])

# %% Continued pretraining
from attnpick import UnslothTrainer, UnslothTrainingArguments  # was: from unsloth import ...
from attnpick import is_bfloat16_supported

trainer = UnslothTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    dataset_text_field = "text",
    max_seq_length = max_seq_length,
    dataset_num_proc = 2,
    args = UnslothTrainingArguments(
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 2,
        max_steps = 3,
        warmup_steps = 1,
        learning_rate = 5e-5,
        embedding_learning_rate = 1e-5,
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

# %% Instruction fine-tuning on Korean Alpaca
alpaca_prompt = """다음은 작업을 설명하는 명령입니다. 요청을 적절하게 완료하는 응답을 작성하세요.

### 지침:
{}

### 응답:
{}"""

def formatting_alpaca(conversations):
    texts = []
    for instruction, output in zip(conversations["instruction"], conversations["output"]):
        texts.append(alpaca_prompt.format(instruction, output) + EOS_TOKEN)
    return {"text": texts}

alpaca_dataset = load_dataset("json", data_files = "alpaca.jsonl", split = "train")
alpaca_dataset = alpaca_dataset.map(formatting_alpaca, batched = True)

trainer = UnslothTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = alpaca_dataset,
    dataset_text_field = "text",
    max_seq_length = max_seq_length,
    dataset_num_proc = 2,
    args = UnslothTrainingArguments(
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 2,
        max_steps = 3,
        warmup_ratio = 0.1,
        learning_rate = 5e-5,
        embedding_learning_rate = 1e-5,
        fp16 = not is_bfloat16_supported(),
        bf16 = is_bfloat16_supported(),
        logging_steps = 1,
        optim = "adamw_8bit",
        weight_decay = 0.00,
        lr_scheduler_type = "linear",
        seed = 3407,
        output_dir = "outputs",
        report_to = "none",
    ),
)
trainer_stats = trainer.train()

# %% Inference
FastLanguageModel.for_inference(model)
inputs = tokenizer([alpaca_prompt.format("피보나치 수열을 계속하세요: 1, 1, 2, 3, 5, 8,", "")],
                   return_tensors = "pt").to(model.device)
outputs = model.generate(**inputs, max_new_tokens = 16, use_cache = True)
print(tokenizer.batch_decode(outputs))

from transformers import TextStreamer
text_streamer = TextStreamer(tokenizer)
_ = model.generate(**inputs, streamer = text_streamer, max_new_tokens = 16)

# %% Save the LoRA, then merged and GGUF
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
if True: model.save_pretrained_merged("model", tokenizer, save_method = "merged_16bit")
if True: model.save_pretrained_gguf("model", tokenizer, quantization_method = "q8_0")

# An Unsloth DPO notebook's shape (Zephyr): PatchDPOTrainer, a LoRA, preference data (prompt / chosen / rejected)
# through datasets, TRL's DPOTrainer called with the notebook's keywords (beta, max_length, max_prompt_length and
# tokenizer on the trainer, warmup_ratio on DPOConfig), then the save cells. Written for attnpick's tests and as an
# example; the only attnpick-specific edit is the import lines. Run it in a folder holding preferences.jsonl.

# %% Patch TRL, load the model in 4-bit
from attnpick import FastLanguageModel, PatchDPOTrainer  # was: from unsloth import ...
from attnpick import is_bfloat16_supported
PatchDPOTrainer()
import torch

max_seq_length = 1024
model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = "tiny-exaone",  # was: "unsloth/zephyr-sft-bnb-4bit"
    max_seq_length = max_seq_length,
    dtype = None,
    load_in_4bit = True,
)

# %% LoRA adapters
model = FastLanguageModel.get_peft_model(
    model,
    r = 64,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 64,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = "unsloth",
    random_state = 3407,
    use_rslora = False,
    loftq_config = None,
)

# %% Preference data
from datasets import load_dataset
raw_datasets = load_dataset("json", data_files = {"train": "preferences.jsonl"})
print(raw_datasets["train"][0])

# %% DPO
from transformers import TrainingArguments
from trl import DPOTrainer, DPOConfig

dpo_trainer = DPOTrainer(
    model = model,
    ref_model = None,
    args = DPOConfig(
        per_device_train_batch_size = 2,
        gradient_accumulation_steps = 2,
        warmup_ratio = 0.1,
        num_train_epochs = 1,
        max_steps = 2,
        learning_rate = 5e-6,
        fp16 = not is_bfloat16_supported(),
        bf16 = is_bfloat16_supported(),
        logging_steps = 1,
        optim = "adamw_8bit",
        weight_decay = 0.0,
        lr_scheduler_type = "linear",
        seed = 42,
        output_dir = "outputs",
        report_to = "none",
    ),
    beta = 0.1,
    train_dataset = raw_datasets["train"],
    tokenizer = tokenizer,
    max_length = 1024,
    max_prompt_length = 512,
)
dpo_trainer.train()

# %% Save the LoRA and the merged model
model.save_pretrained("lora_model")
tokenizer.save_pretrained("lora_model")
if True: model.save_pretrained_merged("model", tokenizer, save_method = "merged_16bit")

# An Unsloth conversational notebook's shape on a real model (docs/real-model.md): SmolLM2-135M-Instruct (ChatML),
# the welcome task, TRL's SFTTrainer with the loss on the answers only, then the adapter saved. CI's real-model
# lane runs it and checks its held-out exact match against `attnpick train`'s.
#   python examples/welcome/notebook.py MODEL OUTPUT   (MODEL: the .gguf file or its folder)
import sys

# %% Load the model (unquantized: on a CPU 4-bit saves memory but costs time, docs/real-model.md)
from attnpick import FastLanguageModel  # was: from unsloth import FastLanguageModel

model_name, output = sys.argv[1], sys.argv[2]
model, tokenizer = FastLanguageModel.from_pretrained(
    model_name = model_name,  # was: "unsloth/SmolLM2-135M-Instruct"
    max_seq_length = 256,
    dtype = None,
    load_in_4bit = False,  # True on a GPU, as Unsloth's notebooks load it
)
model = FastLanguageModel.get_peft_model(
    model,
    r = 16,
    target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    lora_alpha = 32,
    lora_dropout = 0,
    bias = "none",
    use_gradient_checkpointing = False,
    random_state = 3407,
)

# %% Data: chat messages, rendered with the model's own ChatML template
from datasets import load_dataset

dataset = load_dataset("json", data_files = "examples/welcome/train.jsonl", split = "train")

def formatting_prompts_func(examples):
    texts = [tokenizer.apply_chat_template(convo, tokenize = False, add_generation_prompt = False)
             for convo in examples["messages"]]
    return {"text": texts}

dataset = dataset.map(formatting_prompts_func, batched = True, remove_columns = ["messages"])

# %% Train
from trl import SFTConfig, SFTTrainer

trainer = SFTTrainer(
    model = model,
    tokenizer = tokenizer,
    train_dataset = dataset,
    args = SFTConfig(
        dataset_text_field = "text",
        max_seq_length = 256,
        per_device_train_batch_size = 4,
        gradient_accumulation_steps = 1,
        num_train_epochs = 2,
        learning_rate = 2e-4,
        logging_steps = 8,
        optim = "adamw_torch",
        lr_scheduler_type = "linear",
        seed = 3407,
        report_to = "none",
        output_dir = output + "-checkpoints",
        save_strategy = "no",
        gradient_checkpointing = False,  # TRL's default recomputes every layer: time a small model does not need
    ),
)
from attnpick.chat_templates import train_on_responses_only

trainer = train_on_responses_only(
    trainer,
    instruction_part = "<|im_start|>user\n",
    response_part = "<|im_start|>assistant\n",
)
trainer_stats = trainer.train()

# %% Inference
FastLanguageModel.for_inference(model)
messages = [{"role": "user", "content": "Welcome card: name=Yuna Oh; city=Busan; team=Design"}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt = True, return_tensors = "pt",
                                       return_dict = True)
out = model.generate(**inputs, max_new_tokens = 48, do_sample = False)
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens = True))

# %% Save
model.save_pretrained(output)
tokenizer.save_pretrained(output)

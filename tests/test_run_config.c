/* Run-config defaults and keys with Hugging Face's meaning: the library defaults are HF Trainer's (the demo carries
 * its own tuned values), optim.beta1 null means the optimizer's own default, optim.idle_experts is checked, and
 * freeze patterns that match nothing are errors naming the pattern. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "train/run_config.h"
#include "train/trainer.h"

Test(run_config, library_defaults_are_hf_trainer_defaults) {
    run_config c;
    run_config_defaults(&c);
    cr_expect_str_eq(c.optimizer, "adamw");
    cr_expect(c.lr == 5e-5 && isnan(c.beta1) && c.beta2 == 0.999 && c.eps == 1e-8 && c.weight_decay == 0.0,
              "TrainingArguments: learning_rate 5e-5, adam_beta1 0.9 (the optimizer's default), adam_beta2 0.999, adam_epsilon 1e-8");
    cr_expect_str_eq(c.schedule, "linear_decay");
    cr_expect_eq(c.warmup_steps, 0);
    cr_expect(c.grad_clip == 1.0, "max_grad_norm 1.0");
    cr_expect(c.shuffle);
    cr_expect_str_eq(c.idle_experts, "skip");
    run_config d;
    run_config_demo(&d);
    cr_expect(d.lr == 3e-3 && d.beta1 == 0.9 && d.beta2 == 0.98 && d.warmup_steps == 100, "the demo's tuned values");
    cr_expect_str_eq(d.schedule, "cosine");
}

Test(run_config, beta1_null_round_trips) {
    run_config c;
    run_config_defaults(&c);
    cJSON *j = run_config_to_json(&c);
    cJSON *b1 = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "optim"), "beta1");
    cr_expect(cJSON_IsNull(b1), "unset beta1 is written as null");
    run_config d;
    run_config_defaults(&d);
    cr_assert(run_config_set(&d, "optim.beta1=0.5").ok);
    cr_assert(run_config_apply_json(&d, j, "test").ok);
    cr_expect(isnan(d.beta1), "null reads back as unset");
    cJSON_Delete(j);
    cr_assert(run_config_set(&d, "optim.beta1=0.9").ok);
    cr_expect(d.beta1 == 0.9);
    cr_assert(run_config_set(&d, "optim.beta1=null").ok);
    cr_expect(isnan(d.beta1));
    sx_status s = run_config_set(&d, "train.steps=null");
    cr_expect(!s.ok, "null is only for optim.beta1");
}

Test(run_config, idle_experts_is_validated) {
    run_config c;
    run_config_defaults(&c);
    cr_assert(run_config_set(&c, "optim.idle_experts=update").ok);
    cr_expect(run_config_validate(&c).ok);
    cr_assert(run_config_set(&c, "optim.idle_experts=sometimes").ok);
    sx_status s = run_config_validate(&c);
    cr_expect(!s.ok && strstr(s.msg, "optim.idle_experts") && strstr(s.msg, "skip"), "got: %s", s.msg);
}

static sx_status short_run(const char *set, const char *tag) {
    run_config c;
    run_config_demo(&c);
    c.steps = 1;
    c.eval_every = 0;
    c.eval_examples = 8;
    c.batch_size = 4;
    snprintf(c.out_dir, sizeof c.out_dir, "%s/run_config_test_%s_%d", SX_BINARY_DIR, tag, (int)getpid());
    cr_assert(run_config_set(&c, set).ok);
    trainer_opts o = {.quiet = true};
    trainer_result r;
    sx_status s = trainer_run(&c, &o, &r);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c.out_dir);
    cr_expect(system(cmd) == 0);
    return s;
}

Test(run_config, freeze_patterns_must_match, .timeout = 60) {
    sx_status s = short_run("train.freeze=encoder.blok.*", "typo");
    cr_expect(!s.ok && strstr(s.msg, "train.freeze") && strstr(s.msg, "'encoder.blok.*'") && strstr(s.msg, "matches no parameter"), "got: %s",
              s.ok ? "ok" : s.msg);
    s = short_run("train.train_only=*.expert_9.*", "noexpert");
    cr_expect(!s.ok && strstr(s.msg, "train.train_only") && strstr(s.msg, "expert_9"), "4 experts: no expert_9; got: %s", s.ok ? "ok" : s.msg);
    s = short_run("train.freeze=*.expert_1.*, shared.weight", "ok");
    cr_expect(s.ok, "per-expert and plain names match: %s", s.msg);
    s = short_run("train.freeze=*", "all");
    cr_expect(!s.ok && strstr(s.msg, "every parameter is frozen"), "got: %s", s.ok ? "ok" : s.msg);
}

//! The LLM architect: sends a compact JSON context (device, targets, model summary, what was
//! tried and measured) to a language model and asks for one JSON recipe, with the recipe's JSON
//! Schema ([`Recipe::json_schema`]) for the server to enforce, a bound on the answer's length
//! ([`MAX_ANSWER_TOKENS`]) and a time box for the whole proposal ([`proposal_budget`]). The
//! answer is checked with `Recipe::from_json` and against the model; a rejected answer is sent
//! back once with the error, and if the second answer fails too (or the provider fails, or the
//! time box is spent) the heuristic proposes instead. Every exchange is returned in the
//! proposal for the `prompts` table.
//!
//! The HTTP providers (OpenAI-compatible, Anthropic, Ollama) live in `crate::llm`.

use super::heuristic::Heuristic;
use super::{plan_key, Architect, Context, Exchange, Proposal};
use crate::llm::{ChatProvider, ChatRequest, LlmError};
use crate::recipe::{bytes_per_token, predicted_size, Recipe};
use anyhow::Result;
use serde_json::json;
use std::collections::BTreeMap;

pub const SYSTEM_PROMPT: &str = "\
You are the architect of sintra, which compresses GGUF language models to fit edge devices. \
Propose ONE compression recipe as a JSON object and nothing else: \
{\"default_type\": TYPE, \"overrides\": [{\"tensor\": REGEX, \"type\": TYPE}], \"drop_layers\": [], \"imatrix\": false}. \
REGEX matches whole tensor names (e.g. \"blk\\\\.\\\\d+\\\\.ffn_down\\\\.weight\"); the first matching override wins; \
norms stay F32. Use only the allowed types. Do not repeat a recipe already tried. \
Aim: meet every target (tokens_per_second at least min_tps, top-1 agreement at least min_accuracy, memory), \
then maximize accuracy. Generation speed is roughly proportional to 1 / bytes of weights per token.";

/// The most tokens a recipe may take: the longest a schema allows is a few hundred.
pub const MAX_ANSWER_TOKENS: u32 = 768;

/// The temperature of the second attempt at a proposal.
pub const RETRY_TEMPERATURE: f32 = 0.9;

/// How long one proposal (both attempts) may take unless `SINTRA_LLM_PROPOSAL_SECS` says
/// otherwise. A model that needs longer is not worth the wait: the heuristic answers at once.
pub const DEFAULT_PROPOSAL_SECS: u64 = 180;

/// The time box of one proposal: `SINTRA_LLM_PROPOSAL_SECS` or [`DEFAULT_PROPOSAL_SECS`].
pub fn proposal_budget() -> Result<std::time::Duration> {
    match std::env::var("SINTRA_LLM_PROPOSAL_SECS") {
        Err(_) => Ok(std::time::Duration::from_secs(DEFAULT_PROPOSAL_SECS)),
        Ok(raw) => match raw.trim().parse::<u64>() {
            Ok(s) if (1..=86_400).contains(&s) => Ok(std::time::Duration::from_secs(s)),
            _ => anyhow::bail!(
                "SINTRA_LLM_PROPOSAL_SECS '{raw}' is not a number of seconds between 1 and 86400"
            ),
        },
    }
}

/// An architect backed by a chat model, with the heuristic as the fallback.
pub struct LlmArchitect {
    pub provider: Box<dyn ChatProvider>,
    pub fallback: Heuristic,
}

impl std::fmt::Debug for LlmArchitect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmArchitect")
            .field("provider", &self.provider.name())
            .finish()
    }
}

/// The user message: everything the model needs, compact.
pub fn context_json(ctx: &Context<'_>) -> String {
    let m = ctx.model;
    let mut groups: BTreeMap<String, (usize, String, u64)> = BTreeMap::new();
    for t in &m.tensors {
        let kind = match crate::model_info::layer_of(&t.name) {
            Some(_) => t.name.splitn(3, '.').nth(2).unwrap_or(&t.name).to_string(),
            None => t.name.clone(),
        };
        let e = groups
            .entry(kind)
            .or_insert((0, t.ty.to_string(), t.dims[0]));
        e.0 += 1;
    }
    let tensors: Vec<_> = groups
        .iter()
        .map(|(k, (n, ty, row))| json!({"tensor": k, "count": n, "type": ty, "row_len": row}))
        .collect();
    let tried: Vec<_> = ctx
        .experiments
        .iter()
        .map(|e| {
            json!({
                "recipe": serde_json::from_str::<serde_json::Value>(&e.recipe).unwrap_or_default(),
                "status": e.status.as_str(),
                "error": e.error,
                "size_mb": (e.size_bytes as f64 / 1e6 * 10.0).round() / 10.0,
                "tokens_per_second": e.tps(),
                "top1": e.top1(),
                "kld": e.quality.as_ref().map(|q| q.kld),
                "meets_targets": e.passes(),
            })
        })
        .collect();
    let c = &ctx.profile.constraints;
    json!({
        "device": {"name": ctx.profile.name, "cpu_arch": c.cpu_arch, "ram_gb": c.ram_gb, "cores": c.cores,
                   "simd": c.simd, "memory_bandwidth_gbps": c.memory_bandwidth_gbps},
        "targets": {"min_tps": ctx.targets.min_tps(), "min_accuracy": ctx.targets.min_accuracy(),
                    "max_latency_ms": ctx.targets.max_latency(), "max_memory_mb": ctx.targets.max_memory_bytes() / 1e6},
        "model": {"name": m.name, "arch": m.arch, "layers": m.n_layers, "params": m.n_params,
                  "bits_per_weight": (m.bpw() * 100.0).round() / 100.0, "tied_embeddings": m.tied_embeddings,
                  "tensors": tensors},
        "allowed_types": ctx.allowed.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "tried": tried,
    })
    .to_string()
}

impl LlmArchitect {
    fn check(&self, answer: &str, ctx: &Context<'_>) -> Result<Recipe, String> {
        let json = crate::llm::extract_json(answer).map_err(|e| e.to_string())?;
        let mut recipe = Recipe::from_json(json).map_err(|e| e.to_string())?;
        // The first override that matches a tensor wins: a later one with the same pattern can
        // never apply (small models repeat themselves), so it is left out of the recipe.
        let mut seen = std::collections::HashSet::new();
        recipe.overrides.retain(|o| seen.insert(o.tensor.clone()));
        recipe
            .validate(ctx.model, ctx.allowed)
            .map_err(|e| e.to_string())?;
        let key = plan_key(&recipe, ctx.model);
        if let Some(e) = ctx.experiments.iter().find(|e| e.plan_key == key) {
            return Err(format!(
                "this recipe produces the same file as one already tried (iteration {}): propose a different one",
                e.iteration
            ));
        }
        Ok(recipe)
    }
}

impl Architect for LlmArchitect {
    fn name(&self) -> String {
        self.provider.name()
    }

    fn propose(&mut self, ctx: &Context<'_>) -> Result<Option<Proposal>> {
        let provider = self.provider.name();
        let first_user = context_json(ctx);
        let mut user = first_user.clone();
        let mut exchanges = Vec::new();
        let schema = Recipe::json_schema(ctx.model, ctx.allowed);
        let budget = proposal_budget()?;
        let deadline = std::time::Instant::now() + budget;
        for attempt in 0..2 {
            let mut ex = Exchange {
                provider: provider.clone(),
                system: SYSTEM_PROMPT.to_string(),
                user: user.clone(),
                response: None,
                error: None,
                outcome: String::new(),
            };
            let req = ChatRequest {
                system: SYSTEM_PROMPT,
                user: &user,
                schema: Some(("sintra_recipe", &schema)),
                max_tokens: MAX_ANSWER_TOKENS,
                deadline: Some(deadline),
                // Asked again, a model at its usual low temperature mostly repeats itself
                // (SmolLM2 served by sintra-rt did, word for word): the second answer is
                // sampled more freely.
                temperature: (attempt > 0).then_some(RETRY_TEMPERATURE),
            };
            match self.provider.complete(&req) {
                Err(e) => {
                    let e = match e {
                        LlmError::Timeout => format!(
                            "{e}: no answer within the proposal's time box of {} s (SINTRA_LLM_PROPOSAL_SECS)",
                            budget.as_secs()
                        ),
                        e => e.to_string(),
                    };
                    tracing::warn!(%provider, error = %e, "language model failed");
                    ex.error = Some(e);
                    ex.outcome = "failed".into();
                    exchanges.push(ex);
                    break; // a provider error is not fixed by asking again
                }
                Ok(answer) => {
                    ex.response = Some(answer.clone());
                    match self.check(&answer, ctx) {
                        Ok(recipe) => {
                            ex.outcome = "accepted".into();
                            exchanges.push(ex);
                            let plan = recipe.plan(ctx.model);
                            return Ok(Some(Proposal {
                                predicted_size: predicted_size(ctx.model, &plan),
                                predicted_tps: self
                                    .fallback
                                    .ranked(ctx)
                                    .iter()
                                    .find(|s| {
                                        s.bytes_per_token == bytes_per_token(ctx.model, &plan)
                                    })
                                    .map_or(0.0, |s| s.tps),
                                rationale: format!(
                                    "proposed by {provider} (attempt {})",
                                    attempt + 1
                                ),
                                recipe,
                                by: provider,
                                exchanges,
                            }));
                        }
                        Err(why) => {
                            tracing::warn!(%provider, %why, "language model's recipe rejected");
                            ex.outcome = format!("rejected: {why}");
                            exchanges.push(ex);
                            user = format!(
                                "{first_user}\n\nYour previous answer was:\n{answer}\n\nIt was rejected: {why}\nAnswer with one corrected JSON recipe only."
                            );
                        }
                    }
                }
            }
        }
        let mut p = self.fallback.propose(ctx)?;
        if let Some(p) = &mut p {
            p.rationale = format!(
                "{provider} gave no usable recipe; heuristic: {}",
                p.rationale
            );
            p.by = format!("heuristic (fallback from {provider})");
            p.exchanges = exchanges;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::LlmError;
    use crate::model_info::ModelInfo;
    use crate::profile::Profile;
    use std::cell::RefCell;

    /// TEST DOUBLE: a chat provider that plays back scripted answers and records the prompts.
    struct ScriptedProvider {
        answers: RefCell<Vec<Result<String, LlmError>>>,
        seen: std::rc::Rc<RefCell<Vec<String>>>,
    }

    impl ChatProvider for ScriptedProvider {
        fn name(&self) -> String {
            "scripted:test-double".into()
        }
        fn complete(&self, req: &ChatRequest<'_>) -> Result<String, LlmError> {
            assert!(req.schema.is_some() && req.deadline.is_some());
            assert_eq!(req.max_tokens, MAX_ANSWER_TOKENS);
            self.seen.borrow_mut().push(req.user.to_string());
            let mut a = self.answers.borrow_mut();
            if a.is_empty() {
                return Err(LlmError::BadResponse("script exhausted".into()));
            }
            a.remove(0)
        }
    }

    fn propose(answers: Vec<Result<String, LlmError>>) -> (Option<Proposal>, Vec<String>) {
        let model = ModelInfo::load(&crate::models::default_model().unwrap()).unwrap();
        let profile = Profile::load("rpi5").unwrap();
        let targets = crate::targets::resolve(&profile, &model, None, None, None).unwrap();
        let allowed = profile.allowed_types();
        let seen = std::rc::Rc::new(RefCell::new(Vec::new()));
        let mut a = LlmArchitect {
            provider: Box::new(ScriptedProvider {
                answers: RefCell::new(answers),
                seen: seen.clone(),
            }),
            fallback: Heuristic,
        };
        let ctx = Context {
            model: &model,
            profile: &profile,
            targets: &targets,
            allowed: &allowed,
            experiments: &[],
            past: &[],
            mock: true,
            sensitivity: None,
            reference_tps: None,
        };
        let p = a.propose(&ctx).unwrap();
        let seen = seen.borrow().clone();
        (p, seen)
    }

    #[test]
    fn accepts_a_valid_answer_in_prose() {
        let (p, seen) = propose(vec![Ok(
            "Here you go:\n```json\n{\"default_type\": \"Q4_0\", \"overrides\": [{\"tensor\": \"token_embd\\\\.weight\", \"type\": \"Q8_0\"}]}\n```".into(),
        )]);
        let p = p.unwrap();
        assert_eq!(p.recipe.default_type, formats::quant::GgmlType::Q4_0);
        assert_eq!(p.by, "scripted:test-double");
        assert_eq!(p.exchanges.len(), 1);
        assert_eq!(p.exchanges[0].outcome, "accepted");
        let ctx: serde_json::Value = serde_json::from_str(&seen[0]).unwrap();
        assert_eq!(ctx["device"]["name"], "rpi5");
        assert!(ctx["model"]["tensors"].as_array().unwrap().len() > 5);
    }

    #[test]
    fn repeated_overrides_of_one_pattern_keep_the_first() {
        let o = r#"{"tensor": "token_embd\\.weight", "type": "Q8_0"}"#;
        let later = r#"{"tensor": "token_embd\\.weight", "type": "Q4_0"}"#;
        let (p, _) = propose(vec![Ok(format!(
            r#"{{"default_type": "Q4_0", "overrides": [{o}, {later}, {o}]}}"#
        ))]);
        let r = p.unwrap().recipe;
        assert_eq!(r.overrides.len(), 1, "{:?}", r.overrides);
        assert_eq!(r.overrides[0].ty, formats::quant::GgmlType::Q8_0);
    }

    #[test]
    fn re_asks_once_with_the_error_then_accepts() {
        let (p, seen) = propose(vec![
            Ok(r#"{"default_type": "Q4_K", "overrides": [{"tensor": "blk\\.99\\.nothing", "type": "Q8_0"}]}"#.into()),
            Ok(r#"{"default_type": "Q4_K"}"#.into()),
        ]);
        let p = p.unwrap();
        assert_eq!(p.exchanges.len(), 2);
        assert!(
            p.exchanges[0].outcome.contains("overrides[0].tensor"),
            "{}",
            p.exchanges[0].outcome
        );
        assert!(seen[1].contains("It was rejected") && seen[1].contains("overrides[0].tensor"));
        assert_eq!(p.exchanges[1].outcome, "accepted");
    }

    #[test]
    fn falls_back_to_the_heuristic_after_two_bad_answers_or_a_provider_error() {
        let (p, seen) = propose(vec![
            Ok("no idea".into()),
            Ok(r#"{"default_type":"Q9"}"#.into()),
        ]);
        let p = p.unwrap();
        assert_eq!(seen.len(), 2);
        assert!(p
            .by
            .starts_with("heuristic (fallback from scripted:test-double)"));
        assert_eq!(p.exchanges.len(), 2);
        assert!(p
            .exchanges
            .iter()
            .all(|x| x.outcome.starts_with("rejected")));

        let (p, seen) = propose(vec![Err(LlmError::Timeout)]);
        let p = p.unwrap();
        assert_eq!(seen.len(), 1, "a provider error is not retried");
        assert_eq!(p.exchanges[0].outcome, "failed");
        assert!(
            p.exchanges[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("time box")),
            "{:?}",
            p.exchanges[0].error
        );
        assert!(p.by.starts_with("heuristic"));
    }
}

//! How conversations become text for a base (not instruction-tuned) model, and replies back.
//!
//! google/gemma-3-270m is a pretrained base model: under Gemma's chat template its greedy output
//! degenerates into repetition. A base model continues documents, so the conversation is written
//! as a plain transcript — a preamble (the system message, i.e. the persona, when given), two
//! short example exchanges, then the conversation — ending in `Assistant:`. The model's reply is
//! the text up to the next `\nUser:` line. Sampling and continuation scoring both use
//! [`ChatFormat::render_prompt`], so scored continuations sit exactly where replies are generated.

use ethos_core::records::{Message, Role};

/// A way to lay out conversations for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatFormat {
    /// `User: ...` / `Assistant: ...` transcript with a preamble and two example exchanges.
    FewShotTranscript,
}

/// Used when the conversation has no system message.
const DEFAULT_PREAMBLE: &str =
    "The following is a conversation between a user and a helpful, knowledgeable assistant who answers clearly and stays on topic.";

/// Example exchanges that show the model the turn format and the length of a reply.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "How long should I boil an egg?",
        "For a soft-boiled egg, boil it for about 6 minutes. For a hard-boiled egg, boil it for 10 to 12 minutes, then cool it in cold water.",
    ),
    (
        "What is a good way to remember new words in a foreign language?",
        "Review them a little every day with flashcards, and use each new word in a sentence of your own. Spaced repetition helps words stick.",
    ),
];

impl ChatFormat {
    /// The format for an embedded model name (`gemma-3-270m` is a base model).
    pub fn for_model(_model: &str) -> Self {
        ChatFormat::FewShotTranscript
    }

    /// The prompt text for the next assistant turn, ending in `Assistant:` (no trailing space:
    /// the model's first token carries the space, as in the example turns).
    pub fn render_prompt(&self, messages: &[Message]) -> String {
        match self {
            ChatFormat::FewShotTranscript => {
                let system: Vec<&str> = messages
                    .iter()
                    .filter(|message| message.role == Role::System)
                    .map(|message| message.content.trim())
                    .collect();
                let mut text = String::new();
                if system.is_empty() {
                    text.push_str(DEFAULT_PREAMBLE);
                } else {
                    text.push_str(&system.join("\n"));
                }
                text.push_str("\n\n");
                for (question, answer) in EXAMPLES {
                    text.push_str(&format!("User: {question}\nAssistant: {answer}\n"));
                }
                for message in messages {
                    let speaker = match message.role {
                        Role::System => continue,
                        Role::User => "User",
                        Role::Assistant => "Assistant",
                    };
                    text.push_str(&format!("{speaker}: {}\n", message.content.trim()));
                }
                text.push_str("Assistant:");
                text
            }
        }
    }

    /// Strings that end a reply, added to every request's own stop strings.
    pub fn stop_strings(&self) -> Vec<String> {
        match self {
            ChatFormat::FewShotTranscript => vec!["\nUser:".to_string(), "\nAssistant:".to_string()],
        }
    }

    /// The reply as the user sees it: without the space that follows `Assistant:` and without
    /// trailing blank lines.
    pub fn clean_reply(&self, text: &str) -> String {
        match self {
            ChatFormat::FewShotTranscript => text.trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(messages: &[Message], expect_start: &str, expect_end: &str) {
        let text = ChatFormat::FewShotTranscript.render_prompt(messages);
        assert!(text.starts_with(expect_start), "{text}");
        assert!(text.ends_with(expect_end), "{text}");
    }

    #[test]
    fn renders_transcripts() {
        check(&[Message::user("Hi?")], DEFAULT_PREAMBLE, "\nUser: Hi?\nAssistant:");
        check(
            &[Message::system("You are a pirate."), Message::user("Hi?")],
            "You are a pirate.\n\nUser: How long",
            "User: Hi?\nAssistant:",
        );
        check(
            &[Message::user("a"), Message::assistant(" b "), Message::user("c")],
            DEFAULT_PREAMBLE,
            "User: a\nAssistant: b\nUser: c\nAssistant:",
        );
    }
}

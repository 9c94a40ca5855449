//! How conversations become text for the embedded model, and replies back.
//!
//! google/gemma-3-270m is a pretrained base model: under Gemma's chat template its greedy output
//! degenerates into repetition. A base model continues documents, so the conversation is written
//! as a plain transcript — a preamble (the system message, i.e. the persona, when given), two
//! short example exchanges, then the conversation — ending in `Assistant:`. The model's reply is
//! the text up to the next `\nUser:` line. Sampling and continuation scoring both use
//! [`ChatFormat::render_prompt`], so scored continuations sit exactly where replies are generated.
//!
//! A LoRA adapter trained on transcripts no longer needs the examples to find the turn format, so
//! [`ChatFormat::Transcript`] is the same layout without them (shorter prompts, and the adapter
//! is trained and sampled in the format it will be served in). An adapter file names its format
//! (`chat_format` metadata, see [`super::lora`]) by [`ChatFormat::as_str`].

use std::fmt;
use std::str::FromStr;

use ethos_core::records::{Message, Role};

/// A way to lay out conversations for one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChatFormat {
    /// `User: ...` / `Assistant: ...` transcript with a preamble and two example exchanges
    /// (`few_shot_transcript`): for the base model.
    FewShotTranscript,
    /// The same transcript without the example exchanges (`transcript`): for adapters trained on
    /// transcripts, which know the turn format already.
    Transcript,
}

/// A chat format name that is not one of [`ChatFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown chat format `{0}` (known: few_shot_transcript, transcript)")]
pub struct ParseChatFormatError(pub String);

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
    /// Every format, in the order of their introduction.
    pub const ALL: [ChatFormat; 2] = [ChatFormat::FewShotTranscript, ChatFormat::Transcript];

    /// The format for an embedded model name without an adapter (`gemma-3-270m` is a base model).
    pub fn for_model(_model: &str) -> Self {
        ChatFormat::FewShotTranscript
    }

    /// The stable name of the format (`few_shot_transcript`, `transcript`), as written in adapter
    /// files; [`FromStr`] parses it back.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChatFormat::FewShotTranscript => "few_shot_transcript",
            ChatFormat::Transcript => "transcript",
        }
    }

    /// The prompt text for the next assistant turn, ending in `Assistant:` (no trailing space:
    /// the model's first token carries the space, as in the example turns).
    pub fn render_prompt(&self, messages: &[Message]) -> String {
        match self {
            ChatFormat::FewShotTranscript | ChatFormat::Transcript => {
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
                if *self == ChatFormat::FewShotTranscript {
                    for (question, answer) in EXAMPLES {
                        text.push_str(&format!("User: {question}\nAssistant: {answer}\n"));
                    }
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
            ChatFormat::FewShotTranscript | ChatFormat::Transcript => {
                vec!["\nUser:".to_string(), "\nAssistant:".to_string()]
            }
        }
    }

    /// The reply as the user sees it: without the space that follows `Assistant:` and without
    /// trailing blank lines.
    pub fn clean_reply(&self, text: &str) -> String {
        match self {
            ChatFormat::FewShotTranscript | ChatFormat::Transcript => text.trim().to_string(),
        }
    }
}

impl fmt::Display for ChatFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChatFormat {
    type Err = ParseChatFormatError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ChatFormat::ALL
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| ParseChatFormatError(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(messages: &[Message], expect_start: &str, expect_end: &str) {
        check_format(ChatFormat::FewShotTranscript, messages, expect_start, expect_end);
    }

    fn check_format(format: ChatFormat, messages: &[Message], expect_start: &str, expect_end: &str) {
        let text = format.render_prompt(messages);
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

    #[test]
    fn transcript_has_no_examples() {
        let messages = [Message::user("Hi?")];
        let few_shot = ChatFormat::FewShotTranscript.render_prompt(&messages);
        let plain = ChatFormat::Transcript.render_prompt(&messages);
        assert_eq!(plain, format!("{DEFAULT_PREAMBLE}\n\nUser: Hi?\nAssistant:"));
        assert!(few_shot.contains(EXAMPLES[0].0) && !plain.contains(EXAMPLES[0].0));
        check_format(
            ChatFormat::Transcript,
            &[Message::system("You are a pirate."), Message::user("a"), Message::assistant(" b "), Message::user("c")],
            "You are a pirate.\n\nUser: a\n",
            "User: a\nAssistant: b\nUser: c\nAssistant:",
        );
        assert_eq!(ChatFormat::Transcript.stop_strings(), ChatFormat::FewShotTranscript.stop_strings());
    }

    #[test]
    fn names_round_trip() {
        for format in ChatFormat::ALL {
            assert_eq!(format.as_str().parse::<ChatFormat>(), Ok(format));
            assert_eq!(format.to_string(), format.as_str());
        }
        assert_eq!(ChatFormat::FewShotTranscript.as_str(), "few_shot_transcript");
        assert_eq!(ChatFormat::Transcript.as_str(), "transcript");
        let err = "chatml".parse::<ChatFormat>().expect_err("unknown");
        assert!(err.to_string().contains("`chatml`"), "{err}");
    }
}

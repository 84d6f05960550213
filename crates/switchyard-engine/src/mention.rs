//! Reading `@bot <command> args…` the way people type it.
//!
//! Slack clients turn straight quotes into curly ones, people leave apostrophes unbalanced
//! ("don't"), and names have spaces — so this is not a shell: double quotes (straight or curly)
//! group words, a quote that never closes is just a character, and single quotes only group
//! when they open a word and close one.

/// Splits `text` after the bot's mention into the command word (lowercased) and its arguments.
/// `None` when the text does not address the bot or names no command.
pub fn parse_mention(text: &str, bot_user_id: &str) -> Option<(String, Vec<String>)> {
    let mention = format!("<@{bot_user_id}>");
    let start = text.find(&mention)? + mention.len();
    split_command(&text[start..])
}

/// The command (lowercased) and its arguments from what someone wrote to the bot; `None` when
/// there is no command word. A quoted blank (`"" ping`) is no command either: it would name no
/// command yet pass for one (found with the `mention` fuzz target).
pub fn split_command(text: &str) -> Option<(String, Vec<String>)> {
    let mut words = split_args(text);
    if words.first().is_none_or(|word| word.trim().is_empty()) {
        return None;
    }
    let command = words.remove(0).to_lowercase();
    Some((command, words))
}

fn closing(open: char) -> Option<char> {
    match open {
        '"' => Some('"'),
        '“' => Some('”'),
        '„' => Some('“'),
        '\'' => Some('\''),
        '‘' => Some('’'),
        _ => None,
    }
}

/// Splits on whitespace; quoted phrases stay one argument (without their quotes).
pub fn split_args(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.trim().chars().collect();
    let mut args = Vec::new();
    // Closing quotes known not to occur (at a word's end) from here on: once a quote's search
    // fails, later quotes of its kind are not searched again — else text full of unclosed
    // quotes would take quadratic time (found with the `mention` fuzz target).
    let mut unclosed: Vec<char> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        // A quote that opens a word and closes at a word's end groups what is between.
        if let Some(close) = closing(chars[i])
            && !unclosed.contains(&close)
        {
            let end = (i + 1..chars.len()).find(|&j| {
                (chars[j] == close || (close == '"' && chars[j] == '”'))
                    && chars.get(j + 1).is_none_or(|c| c.is_whitespace())
            });
            if let Some(end) = end {
                args.push(chars[i + 1..end].iter().collect());
                i = end + 1;
                continue;
            }
            unclosed.push(close);
        }
        let end = (i..chars.len())
            .find(|&j| chars[j].is_whitespace())
            .unwrap_or(chars.len());
        args.push(chars[i..end].iter().collect());
        i = end;
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text of many quotes that never close took quadratic time (a mention of 1 MiB, within
    /// the body limit, kept a worker busy for minutes); it is linear now, and splits as before.
    #[test]
    fn many_unclosed_quotes_split_in_linear_time() {
        let text = "\"a ".repeat(200_000);
        let args = split_args(&text);
        assert_eq!(args.len(), 200_000);
        assert!(args.iter().all(|a| a == "\"a"));
        assert_eq!(
            split_args("'x \"b c\" d"),
            vec!["'x", "b c", "d"],
            "a quote of another kind still groups"
        );
    }

    #[test]
    fn commands_and_arguments() {
        assert_eq!(
            parse_mention("<@U1> ping", "U1"),
            Some(("ping".into(), vec![]))
        );
        assert_eq!(
            parse_mention("hey <@U1>  Grant  \"Alice Smith\" laser-cutter", "U1"),
            Some((
                "grant".into(),
                vec!["Alice Smith".into(), "laser-cutter".into()]
            ))
        );
        assert_eq!(parse_mention("<@U2> ping", "U1"), None);
        assert_eq!(parse_mention("<@U1>", "U1"), None);
    }

    /// A quoted blank first word split as an empty command (the `mention` fuzz target's
    /// finding): it is no command, and a quoted blank later on is still an argument.
    #[test]
    fn a_quoted_blank_is_no_command() {
        assert_eq!(parse_mention("<@U1>\"\" \"\0 a", "U1"), None);
        assert_eq!(parse_mention("<@U1> \" \" ping", "U1"), None);
        assert_eq!(split_command("'' ping"), None);
        assert_eq!(
            parse_mention("<@U1> note \"\"", "U1"),
            Some(("note".into(), vec![String::new()]))
        );
    }

    #[test]
    fn quotes_as_people_type_them() {
        assert_eq!(
            split_args("note “big laser” now"),
            vec!["note", "big laser", "now"]
        );
        assert_eq!(split_args("don't stop"), vec!["don't", "stop"]);
        assert_eq!(split_args("say 'hello there'"), vec!["say", "hello there"]);
        assert_eq!(
            split_args("\"unclosed phrase"),
            vec!["\"unclosed", "phrase"]
        );
        assert_eq!(split_args("   "), Vec::<String>::new());
    }
}

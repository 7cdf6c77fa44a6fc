//! Sentences the `int8-fast` precision measures its activation ranges on at load (see
//! `kernels::gemm_a8`). Fixed and part of the binary, so the same model always quantises the same way and
//! stored vectors stay valid; varied (questions, commands, code, chit-chat, long and short, some
//! punctuation and numbers) so every channel's usual range shows up. Written for this project; none is
//! taken from an evaluation set.

/// The calibration sentences.
pub const SENTENCES: &[&str] = &[
    "what's the weather going to be like tomorrow morning",
    "Write a Python function that merges two sorted lists into one sorted list.",
    "Summarise this quarterly report in three bullet points for the board.",
    "hi",
    "Can you explain how a hash map handles collisions?",
    "translate 'where is the train station' into German",
    "My order #48213 arrived damaged, I want a refund.",
    "Why does my Rust code fail with 'borrowed value does not live long enough'?",
    "tell me a joke about cats",
    "How many tablespoons are in a cup?",
    "Draft a polite email declining the meeting on Friday at 3pm.",
    "What is the capital of Australia?",
    "solve 3x + 7 = 22 and show the steps",
    "I feel stressed about my exams next week, any advice?",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1; why is this slow?",
    "Recommend a good science fiction novel for a long flight.",
    "set an alarm for 6:45 am",
    "What are the side effects of ibuprofen?",
    "Compare the pros and cons of renting versus buying a house in a big city.",
    "ok thanks, that's all",
    "Generate a haiku about autumn leaves falling in the rain.",
    "How do I reset my password if I no longer have access to my email?",
    "Explain quantum entanglement to a ten-year-old.",
    "book a table for four at an Italian restaurant tonight",
    "What's the difference between TCP and UDP?",
    "Please rewrite this paragraph so it sounds more formal and concise.",
    "who won the world cup in 2018",
    "Convert 72 degrees Fahrenheit to Celsius.",
    "Write unit tests for a function that parses ISO 8601 dates.",
    "is it safe to eat raw cookie dough",
    "Give me a three-day itinerary for Lisbon on a budget.",
    "The deployment failed with exit code 137 after the container ran out of memory.",
    "what does the word 'ephemeral' mean",
    "How should I structure a cover letter for a data analyst position?",
    "Play some relaxing jazz music.",
    "List the planets of the solar system in order from the sun.",
    "Can you check my bank balance and recent transactions?",
    "Refactor this JavaScript callback chain to use async/await.",
    "What are good exercises for lower back pain?",
    "Analyse the sentiment of these customer reviews and group them by theme.",
];

"""Multi-turn prompts: the last user turn with the user turns before it (oldest first).

Three kinds, each tagged `conv` and one of:

- `followup`: the last turn leans on what came before ("and now in Rust?"); its label is the earlier turns'
  route (or null when the conversation was out of scope all along);
- `switch`: the last turn stands on its own and changes the topic, to another route or out of scope; its
  label is its own.

Written from scratch for the shipped routes.yaml, before any conversation-aware rule was measured.
"""

ITEMS = []


def add(label, kind, context, text):
    ITEMS.append((label, kind, context, text))


F, S = "followup", "switch"

# ---------------------------------------------------------------- follow-ups that stay on the route
add("code", F, ["Write a Python function that checks whether a string is a palindrome."], "and now in Rust?")
add("code", F, ["Implement binary search over a sorted array in Java."], "Can you make it recursive instead?")
add("code", F, ["Write a bash script that copies my home folder to /mnt/backup every night."],
    "Also make it delete copies older than 30 days.")
add("code", F, ["Create a React component for a login form with email and password fields."],
    "add a remember-me checkbox too")
add("code", F, ["Give me a Go HTTP handler that returns the server time as JSON."], "Now add a unit test for it.")
add("code", F, ["Write a TypeScript function that debounces another function."], "same thing but throttle")
add("code", F, ["Write a Node script that downloads a list of URLs one after another."],
    "use async/await and do five at a time please")
add("code", F, ["Implement a stack class in C++ with push, pop and top."], "make it a template")
add("code", F, ["Write a Python class for a simple LRU cache."], "what would that look like in Go?")
add("debugging", F, ["My Flask app raises BadRequestKeyError when I submit the signup form. Why?"],
    "I checked, the field name matches. What else could it be?")
add("debugging", F, ["Getting 'segmentation fault (core dumped)' when my C program frees a linked list."],
    "it only happens when the list has a single element")
add("debugging", F, ["npm install fails with ERESOLVE unable to resolve dependency tree."],
    "I tried --legacy-peer-deps and it still fails")
add("debugging", F, ["My Docker container exits immediately with code 137."], "What does that number mean exactly?")
add("debugging", F, ["Python says ModuleNotFoundError: No module named 'requests' although I installed it."],
    "I'm using a virtualenv, does that matter?")
add("debugging", F, ["My useEffect hook runs twice on every page load in React 18."], "it's only in development, right?")
add("debugging", F, ["Why does my SQL query return duplicate rows after I added a LEFT JOIN?"],
    "the orders table has several rows per customer")
add("math", F, ["Solve 3x^2 - 12x + 9 = 0."], "now show me how to check the answer")
add("math", F, ["What is the derivative of x^3 * ln(x)?"], "and the second derivative?")
add("math", F, ["Prove that the square root of 2 is irrational."],
    "Can you explain the step where we assume the fraction is in lowest terms?")
add("math", F, ["What's the probability of rolling two sixes with two dice?"], "what about three sixes with three dice?")
add("math", F, ["Compute the integral of sin(x)^2 from 0 to pi."], "why do we use the double angle formula there?")
add("math", F, ["What is 15% of 240?"], "and 17.5%?")
add("writing", F, ["Write a cover letter for a junior data engineer position at a logistics company."],
    "make it shorter and less formal")
add("writing", F, ["Draft a wedding toast for my sister, about two minutes long."], "add a joke about her cooking")
add("writing", F, ["Write a short poem about autumn in the city."], "Now make it rhyme.")
add("writing", F, ["Write a product description for a bamboo toothbrush for our online shop."],
    "give me two more versions")
add("writing", F, ["Write a LinkedIn post announcing that I've joined a new company."], "less braggy please")
add("summarisation", F, ["Can you summarise these meeting notes: Q3 revenue up 8%, hiring freeze lifted in "
                         "engineering, office move postponed to March, new expense tool rolls out next month."],
    "shorter, one sentence")
add("summarisation", F, ["Give me the gist of this email thread: the vendor says the shipment slipped two weeks, "
                         "procurement wants a discount, and legal asks whether the contract allows penalties."],
    "now just the action items")
add("summarisation", F, ["Summarise the plot of Moby-Dick in a paragraph."], "even shorter, for a ten-year-old")
add("translation", F, ["Translate 'Where is the train station?' into German."], "and into Italian?")
add("translation", F, ["How do you say 'thank you for your patience' in Japanese?"], "what about in Korean")
add("translation", F, ["Translate into Spanish: Our office will be closed on Monday for the public holiday."],
    "can you make it more formal?")
add("translation", F, ["Translate 'I would like a coffee with milk' into French."], "and how do I pronounce it?")
add("billing_support", F, ["I was charged twice for my subscription this month."],
    "It was on the 3rd and again on the 5th, same amount.")
add("billing_support", F, ["How do I update the credit card on my account?"], "I don't see that option anywhere")
add("billing_support", F, ["I want to cancel my plan and get a refund for the unused months."],
    "how long will that take?")
add("billing_support", F, ["Why did my invoice go up from $20 to $35 this month?"], "I never added any extra seats")
add("sensitive_medical", F, ["I've had a headache and blurred vision for three days. Should I be worried?"],
    "I also feel a bit nauseous")
add("sensitive_medical", F, ["Is it safe to take ibuprofen with my blood pressure medication?"],
    "it's lisinopril, 10 mg a day")
add("sensitive_medical", F, ["My son has a fever of 39.5 and a rash on his chest."], "he's four years old")
add("chitchat", F, ["Hi! How's your day going?"], "haha nice, mine is pretty slow")
add("chitchat", F, ["Tell me something fun about yourself."], "another one!")
add("data_analysis", F, ["I have a CSV of sales per region per month. How do I find which region grew fastest?"],
    "and how would I plot that?")
add("data_analysis", F, ["Run a regression of house price on square footage for this data set."],
    "what does an R-squared of 0.62 mean here?")
add("data_analysis", F, ["Which statistical test should I use to compare conversion rates of two landing pages?"],
    "the samples are 1,200 and 1,350 visitors")
add("legal", F, ["Can my landlord keep my deposit for normal wear and tear?"], "the lease says nothing about it")
add("legal", F, ["Review this NDA clause: the receiving party shall not disclose confidential information for "
                 "ten years after termination."], "is ten years unusual?")
add("legal", F, ["Do I need a licence to sell homemade jam at a farmers market?"], "I'm in Oregon, if that matters")
# Two earlier turns: the follow-up leans on the older one as well.
add("code", F, ["Write a Python script that renames all .jpeg files in a folder to .jpg.",
                "Make it work recursively through subfolders."], "cool, now print how many it renamed")
add("math", F, ["What is the sum of the first 100 positive integers?",
                "How did Gauss do it in his head?"], "does the same trick work for odd numbers only?")
# Out of scope all along: the follow-up must stay out of scope.
add(None, F, ["What's the weather like in Paris tomorrow?"], "and on Sunday?")
add(None, F, ["Who won the Oscar for best picture this year?"], "who directed it?")
add(None, F, ["Recommend a good pizza place near Central Park."], "something cheaper?")
add(None, F, ["How tall is Mount Everest?"], "and K2?")
add(None, F, ["What's a good recipe for lasagna?"], "can I make it without ricotta?")
add(None, F, ["Play some relaxing jazz."], "louder please")

# ---------------------------------------------------------------- topic changes to another route
add("math", S, ["Write a Python function that checks whether a string is a palindrome."],
    "What's the integral of 1/x?")
add("translation", S, ["Solve 2x + 7 = 19."], "Translate 'good morning, see you later' into French.")
add("billing_support", S, ["Write a short poem about autumn in the city."],
    "Unrelated, but I was charged twice for my subscription.")
add("debugging", S, ["How do I change my billing address?"],
    "My React app shows a blank page after deploy and the console says Unexpected token '<'.")
add("writing", S, ["Getting 'segmentation fault' when my C program frees a linked list."],
    "Never mind that, write me a haiku about rain.")
add("legal", S, ["I've had a headache and blurred vision for three days."],
    "Can my employer make me work unpaid overtime?")
add("code", S, ["hey there!"], "Write a Java class for a bank account with deposit and withdraw methods.")
add("summarisation", S, ["How do I compute a rolling average in pandas?"],
    "Summarise this for me: the council approved the new bike lanes, construction starts in May, and two "
    "streets will be one-way during the works.")
add("data_analysis", S, ["Is a verbal agreement legally binding?"],
    "how do I find outliers in a column of order values?")
add("sensitive_medical", S, ["Translate 'where is the pharmacy' into Spanish."],
    "I get chest pain when I climb stairs, what could cause that?")
add("code", S, ["What's 12 times 17?"], "write a regex that matches UK postcodes")
add("chitchat", S, ["Why is my Python loop so slow?"], "anyway, how are you doing today?")
add("math", S, ["Draft a polite reminder email about an unpaid invoice."], "What is the square root of 1764?")
add("debugging", S, ["Translate 'happy birthday' into German."],
    "My Kotlin build fails with 'Unresolved reference: viewModels'.")
add("legal", S, ["Write a Python function to flatten a nested list."],
    "Is it legal to record a phone call without telling the other person?")
add("writing", S, ["My invoice shows the wrong VAT number."], "Write a tweet announcing our summer sale.")

# ---------------------------------------------------------------- topic changes out of scope
add(None, S, ["Write a Python function that checks whether a string is a palindrome."],
    "What's the weather going to be like in Lisbon on Saturday?")
add(None, S, ["Solve 3x^2 - 12x + 9 = 0."], "Book me a table for four at a sushi place tonight.")
add(None, S, ["I was charged twice for my subscription this month."], "who won the Champions League in 2019?")
add(None, S, ["Write a short poem about autumn in the city."], "turn on the living room lights")
add(None, S, ["My Docker container exits immediately with code 137."], "what's a good recipe for banana bread?")
add(None, S, ["Can my landlord keep my deposit?"], "how many moons does Jupiter have?")
add(None, S, ["How do I find which region grew fastest in my sales CSV?"],
    "what's the best way to get from the airport to downtown Rome?")
add(None, S, ["Is it safe to take ibuprofen with lisinopril?"], "set an alarm for 7 tomorrow")
add(None, S, ["Summarise these meeting notes for me."], "what time is it in Sydney right now?")
add(None, S, ["Translate 'thank you' into Japanese."], "track my package from Amazon")

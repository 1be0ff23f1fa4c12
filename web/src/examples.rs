//! Example tasks the page offers with one click: a few labelled sentences per label and
//! held-out sentences to score. Written for this project (no dataset text).

pub struct ExampleTask {
    pub name: &'static str,
    pub title: &'static str,
    pub examples: &'static str,
    pub heldout: &'static str,
}

pub const EXAMPLES: &[ExampleTask] = &[
    ExampleTask {
        name: "home-assistant",
        title: "Home assistant",
        examples: "\
weather: will it rain tomorrow
weather: how hot is it going to be this afternoon
weather: do I need an umbrella today
alarm: wake me up at six thirty
alarm: set an alarm for 7 am
alarm: cancel my morning alarm
music: play some jazz
music: put on my workout playlist
music: skip this song
shopping: add milk to my shopping list
shopping: I need to buy eggs and bread
shopping: what is on my grocery list",
        heldout: "\
weather: what's the forecast for the weekend
weather: is it going to snow tonight
alarm: set an alarm for noon
alarm: wake me at five tomorrow
music: play something by the beatles
music: turn the music up and play rock
shopping: put apples on the list
shopping: remind me to buy coffee beans",
    },
    ExampleTask {
        name: "support-tickets",
        title: "Support tickets",
        examples: "\
billing: I was charged twice this month
billing: how do I update my credit card
billing: can I get a refund for my last invoice
login: I forgot my password
login: the app says my account is locked
login: I can't sign in with my email
bug: the page crashes when I click save
bug: the export button does nothing
bug: images don't load on the dashboard",
        heldout: "\
billing: why is my bill higher than usual
billing: please send me a copy of the receipt
login: reset my password please
login: two factor code never arrives
bug: the app freezes when I upload a file
bug: the search results are empty even though data exists",
    },
];
